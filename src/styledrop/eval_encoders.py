"""The base's eyes measured: the VQ tokenizer (reconstruction) and the CLIP scorer (zero-shot retrieval).

Both read a *parts folder*: a base in aMUSEd's layout (``vqvae/``, ``tokenizer/``, ``clip_scorer/``) or a
folder of finished pretraining stages (``vqvae/``, ``tokenizer/``, ``clip/``, as ``pretrained_stages/``).
Splits are the world's, plus ``space``: pretraining contents in the style space.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from transformers import CLIPTokenizer

from . import world
from .evaluate import evaluate_vq
from .io import UserError
from .muse.base import load_vq
from .muse.toy_clip import load_clip
from .muse.vq import psnr, round_trip
from .oracle import Oracles, to_tensor
from .scorer import Scorer

SPLITS = (*world.SPLITS, "space")


def load_vq_part(folder: Path):
    if not (folder / "vqvae" / "config.json").is_file():
        raise UserError(f"{folder} has no VQ tokenizer: expected {folder / 'vqvae'}/config.json")
    try:
        return load_vq(folder / "vqvae").eval()
    except (OSError, ValueError, RuntimeError) as e:
        raise UserError(f"cannot load the VQ tokenizer in {folder / 'vqvae'}: {e}") from None


def load_clip_part(folder: Path) -> Scorer:
    """The whole CLIP (image and text towers) with its tokenizer, as a scorer of raw world pictures."""
    clip = next((folder / d for d in ("clip_scorer", "clip") if (folder / d / "config.json").is_file()), None)
    if clip is None:
        raise UserError(f"{folder} has no CLIP image tower: expected {folder / 'clip_scorer'}/ (a base) or "
                        f"{folder / 'clip'}/ (pretraining stages); a real aMUSEd folder has only CLIP's text tower")
    try:
        model, tokenizer = load_clip(clip).eval(), CLIPTokenizer.from_pretrained(folder / "tokenizer")
        return Scorer(model, tokenizer, None, str(clip))
    except (OSError, ValueError, RuntimeError) as e:
        raise UserError(f"cannot load the CLIP in {clip}: {e}") from None


@torch.no_grad()
def reconstruction_psnr(vq, images: list[np.ndarray]) -> float:
    """Mean-squared-error PSNR (dB) of encode-then-decode over a list of (H, W, 3) uint8 pictures."""
    x = to_tensor(images)
    return psnr(round_trip(vq, x)[0], x)


def evaluate_tokenizer(vq, oracles: Oracles, n: int = 96, seed: int = 7, images=None) -> dict:
    """Per split: PSNR, codes used, oracle content/style on reconstructions; ``images``: the user's own."""
    out = {split: evaluate_vq(vq, oracles, n, seed, split) for split in SPLITS}
    out["space"].pop("style_acc")  # the style oracle knows the named styles only
    if images:
        out["images"] = {"psnr": reconstruction_psnr(vq, images), "n": len(images)}
    return out


def _retrieval(img: torch.Tensor, texts: torch.Tensor, truth: list[int]) -> float:
    return float(np.mean([int(i) == t for i, t in zip((img @ texts.T).argmax(-1), truth)]))


def evaluate_clip(scorer: Scorer, n: int = 200, seed: int = 8) -> dict:
    """Per split, zero-shot on fresh renders:
    - ``content_acc``: the right "a {content}" prompt is the closest of all contents';
    - ``style_acc``: the right "a picture in {descriptor}" is the closest of all named styles' (named styles);
    - ``caption_rank1``: the picture's own caption scores above the same caption with each other content."""
    contents = scorer.text_embeds([world.caption(c, None) for c in world.CONTENTS])
    styles = scorer.text_embeds([world.style_caption(s) for s in world.STYLE_NAMES])
    out = {}
    for split in SPLITS:
        choices = world.choose_pairs("pretrain", world.SPACE) if split == "space" else world.pairs(split)
        samples = world.batch(n, seed, choices)
        img = scorer.image_embeds([s.image for s in samples])
        r = {"content_acc": _retrieval(img, contents, [world.CONTENTS.index(s.content) for s in samples])}
        if split != "space":
            r["style_acc"] = _retrieval(img, styles, [world.STYLE_NAMES.index(s.style) for s in samples])
        caps = [world.look_caption(c, s.look) if s.look else world.caption(c, s.style)
                for s in samples for c in world.CONTENTS]
        with warnings.catch_warnings():  # a v1 tokenizer cuts style-space captions: that is part of the measure
            warnings.simplefilter("ignore")
            txt = scorer.text_embeds(caps).view(n, len(world.CONTENTS), -1)  # (n, contents, D)
        best = torch.einsum("ncd,nd->nc", txt, img).argmax(-1)
        r["caption_rank1"] = float(np.mean([int(b) == world.CONTENTS.index(s.content) for b, s in zip(best, samples)]))
        out[split] = r | {"n": n}
    return out
