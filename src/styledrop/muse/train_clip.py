"""Stage 2 of pretraining: a tiny CLIP (text encoder T + image encoder), trained contrastively.

Captions name content and style, content only, or style only. Several images in a batch can
fit one caption (same content and style), so the loss is multi-positive: the target of each
row is spread evenly over every image (or caption) the caption (or image) truly matches.
The pair is both T for the transformer and our CLIP scorer (CLIP-T, CLIP-I).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPModel

from .. import world
from ..oracle import to_tensor
from . import stages
from .text import tokenize
from .toy_clip import CONV, ToyCLIPModel


@dataclass(frozen=True)
class ClipTrainConfig:
    steps: int = 1000
    batch: int = 96
    lr: float = 1e-3
    width: int = 128
    layers: int = 3
    space: float = 0.0  # fraction of pictures from the style space (and its words in the tokenizer); 0 = v1
    # fraction of captions naming the content only: content is what feedback must judge in a new style
    content_only: float = 0.2
    seed: int = 2
    # > 0: each batch is groups of this many pictures sharing one style or look, so that within a group only the
    # content tells the captions apart (the style alone is learned within a few hundred steps, content not)
    grouped: int = 0
    # pixels per side of the image tower's patches: 8 gives 8x8 patches of a 64-px picture; 4 gives 16x16, finer
    # shapes for about 4x the cost (content stayed at chance for 1000 steps at 8 px, docs/experiments.md)
    patch: int = 8
    # > 0: weight of a second loss on the image tower, a linear head (then dropped) naming the picture's content.
    # Contrastive training alone collapses the object: while the image tower cannot yet see shapes, the text
    # tower maps "a cat" and "a dog" to one point (cosine 0.86 -> 1.0 in 25 steps), after which no gradient
    # teaches the image tower shapes. The head gives it that gradient from step 0 (docs/experiments.md, CLIP).
    content_head: float = 0.0
    # the image tower: "vit" (CLIP's own) or "conv" (a small CNN, toy_clip.py): the ViT never learned shapes here
    tower: str = "vit"

    def recipe(self) -> dict:
        """What makes a run (more steps may continue one); ``space``/``content_only``/``grouped``/``patch``/
        ``content_head``/``tower`` only when not v1's."""
        v1 = {"space": 0.0, "content_only": 0.2, "grouped": 0, "patch": 8, "content_head": 0.0, "tower": "vit"}
        return {k: v for k, v in asdict(self).items() if k != "steps" and v1.get(k, object()) != v}


def clip_config(tokenizer, width: int = 128, layers: int = 4, patch: int = 8, tower: str = "vit") -> CLIPConfig:
    common = dict(hidden_size=width, intermediate_size=width * 4, num_hidden_layers=layers,
                  num_attention_heads=4)
    text = dict(common, vocab_size=len(tokenizer), max_position_embeddings=tokenizer.model_max_length,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)
    vision = dict(common, image_size=64, patch_size=patch)
    if tower not in ("vit", CONV):
        raise ValueError(f"unknown image tower {tower!r}; expected vit or {CONV}")
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=width)
    if tower == CONV:
        config.vision_tower = CONV  # kept in config.json: ToyCLIPModel builds the CNN from it
    return config


def look_of(s: world.Sample) -> str:
    """What a caption can say of a picture's style: its named style, or its style-space look."""
    return s.look or s.style


def _captions(samples, rng: torch.Generator, content_only: float = 0.2):
    """Per sample: a caption and what it pins down (content or None, look_of or None)."""
    out = []
    for s in samples:
        r = torch.rand(1, generator=rng).item()
        if r < content_only:
            out.append((world.caption(s.content, None, int(r * 10)), s.content, None))
        elif r < content_only + 0.2:
            style_only = f"a picture {s.look}" if s.look else world.style_caption(s.style)
            out.append((style_only, None, look_of(s)))
        else:
            out.append((s.caption, s.content, None if s.look and s.look not in s.caption else look_of(s)))
    return out


def _grouped_batch(i: int, cfg: ClipTrainConfig, choices, space) -> list[world.Sample]:
    """Batch ``i`` as groups of ``cfg.grouped`` pictures, each group in one look (``cfg.space`` of the groups)
    or one named style, its contents drawn freely."""
    out = []
    for k in range(cfg.batch // cfg.grouped):
        rng = np.random.default_rng([cfg.seed, i, k])
        first = (i * cfg.batch + k * cfg.grouped)
        if rng.random() < cfg.space:
            look = world.space.draw_look(rng)
            out += [world.sample_look(first + j, cfg.seed, space, look) for j in range(cfg.grouped)]
        else:
            style = choices[rng.integers(len(choices))][1]
            same = [(c, s) for c, s in choices if s == style]
            out += [world.sample(first + j, cfg.seed, same) for j in range(cfg.grouped)]
    return out


def train_clip(cfg: ClipTrainConfig, tokenizer, ckpt=None, progress=None) -> CLIPModel:
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    model = ToyCLIPModel(clip_config(tokenizer, cfg.width, cfg.layers, cfg.patch, cfg.tower)).train()
    head = nn.Linear(cfg.width, len(world.PRETRAIN_CONTENTS)) if cfg.content_head else None
    trained = nn.ModuleDict({"clip": model, "head": head}) if head is not None else model  # what checkpoints hold
    opt = torch.optim.AdamW(trained.parameters(), lr=cfg.lr, weight_decay=0.05)
    choices, space = world.pairs("pretrain"), world.choose_pairs("pretrain", world.SPACE)

    def step(i):
        samples = (_grouped_batch(i, cfg, choices, space) if cfg.grouped else
                   [world.mixed_sample(i * cfg.batch + k, cfg.seed, choices, space, cfg.space)
                    for k in range(cfg.batch)])
        caps = _captions(samples, g, cfg.content_only)
        ids = tokenize(tokenizer, [c for c, _, _ in caps])
        out = model(input_ids=ids, pixel_values=to_tensor([s.image for s in samples]))
        match = torch.tensor([[(c is None or c == s.content) and (st is None or st == look_of(s))
                               for _, c, st in caps] for s in samples], dtype=torch.float32)  # (img, txt)
        logits = out.logits_per_image  # (img, txt), already scaled by the learned temperature
        loss_i = -(F.log_softmax(logits, 1) * match / match.sum(1, keepdim=True)).sum(1).mean()
        loss_t = -(F.log_softmax(logits, 0) * match / match.sum(0, keepdim=True)).sum(0).mean()
        loss = (loss_i + loss_t) / 2
        losses = {"loss": loss.item()}
        if head is not None:
            truth = torch.tensor([world.PRETRAIN_CONTENTS.index(s.content) for s in samples])
            content = F.cross_entropy(head(out.vision_model_output.pooler_output), truth)
            loss = loss + cfg.content_head * content
            losses["content"] = content.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return losses

    stages.run(model=trained, opt=opt, steps=cfg.steps, step=step, ckpt=ckpt, progress=progress,
               recipe=cfg.recipe(), generators={"data": g})
    return model.eval()
