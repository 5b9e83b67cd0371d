"""Text side of the base model: an offline CLIP tokenizer and the frozen text encoder T.

The tiny base ships a byte-level BPE tokenizer in CLIP's format (vocab + merges learned on the
toy world's captions plus common English words), so ``CLIPTokenizer.from_pretrained`` loads it
exactly like the tokenizer of a real aMUSEd folder.
"""

from __future__ import annotations

import json
import string
import warnings

import numpy as np
import torch
from tokenizers import pre_tokenizers, trainers
from transformers import CLIPTokenizer

from .. import world
from ..io import UserError

COMMON_WORDS = (
    "a an the of in on at with and or to from by for is are this that picture image photo drawing "
    "painting style big small red blue green yellow black white orange purple pink brown grey gold "
    "riding sitting next under over near behind two three one many little large tiny happy cute old new "
    "dog teapot robot castle horse sun cloud mountain river city sky ocean sea flying swimming"
).split()


def caption_corpus(space: bool = False) -> list[str]:
    """Every caption the world can write, plus common words and each printable character
    (``space``: and a fixed draw of style-space captions, so each of its words is one token)."""
    lines = []
    if space:
        looks = [world.space.draw_look(np.random.default_rng([5, i])).descriptor for i in range(3000)]
        lines += [world.look_caption(world.CONTENTS[i % len(world.CONTENTS)], look, i) for i, look in enumerate(looks)]
    for c, s in world.pairs():
        lines += [world.caption(c, s, t) for t in range(len(world.CAPTION_TEMPLATES))]
    for c in world.CONTENTS:
        lines += [world.caption(c, None, t) for t in range(len(world.CONTENT_ONLY_TEMPLATES))]
    for s in world.STYLE_NAMES:
        lines.append(world.style_caption(s))
    lines += COMMON_WORDS * 3
    lines += list(string.ascii_lowercase + string.digits + string.punctuation)  # every "c</w>" exists
    return lines


def build_tokenizer(vocab_size: int = 1024, max_length: int = 32, space: bool = False) -> CLIPTokenizer:
    """Learn a CLIP-format BPE tokenizer on the toy world's captions (deterministic)."""
    tok = CLIPTokenizer()  # empty vocabulary; carries CLIP's normaliser and pre-tokeniser
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, show_progress=False, end_of_word_suffix="</w>",
        special_tokens=["<|startoftext|>", "<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend = tok.backend_tokenizer
    backend.train_from_iterator(caption_corpus(space), trainer)
    model = json.loads(backend.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return CLIPTokenizer(vocab=model["vocab"], merges=merges, model_max_length=max_length)


def short(text: str, limit: int = 80) -> str:
    """A prompt as logs and messages show it: at most ``limit`` characters."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def tokenize(tokenizer, prompts: list[str], allow_empty: bool = False) -> torch.Tensor:
    """Token ids (B, max_length), padded; warns when a prompt is cut. Empty prompts are refused unless
    ``allow_empty`` (the unconditional branch of guidance and caption dropout use "")."""
    for p in prompts:
        if not isinstance(p, str) or (not allow_empty and not p.strip()):
            raise UserError("empty prompt: give some text, e.g. --prompt 'a fish'")
    n = tokenizer.model_max_length
    ids = tokenizer(prompts, padding="max_length", truncation=False, return_tensors=None)["input_ids"]
    out = []
    for p, row in zip(prompts, ids):
        if len(row) > n:
            warnings.warn(f"prompt is {len(row)} tokens, longer than the {n} the text encoder takes; "
                          f"it was cut: {short(p)!r}", stacklevel=2)
            row = row[: n - 1] + [tokenizer.eos_token_id]
        out.append(row)
    return torch.tensor(out)


def encode_text_with_grad(text_encoder, tokenizer, prompts: list[str],
                          allow_empty: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(hidden states (B, L, D) from the penultimate layer, pooled projection (B, P)), as aMUSEd does."""
    ids = tokenize(tokenizer, prompts, allow_empty).to(text_encoder.device)
    out = text_encoder(ids, return_dict=True, output_hidden_states=True)
    return out.hidden_states[-2], out.text_embeds


@torch.no_grad()
def encode_text(text_encoder, tokenizer, prompts: list[str],
                allow_empty: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``encode_text_with_grad`` for a frozen T (no graph kept)."""
    return encode_text_with_grad(text_encoder, tokenizer, prompts, allow_empty)
