"""Restyle an existing picture: MaskGIT editing with a style adapter.

Tokenize the input, re-mask a ``strength`` fraction of its tokens, and decode them with the adapter and the
usual guidance. The kept tokens hold the layout; the new ones bring the style. Decoding starts at the step of
the cosine schedule that masks that fraction, so strength 1 is exactly sampling from scratch with the same seed.

Which tokens are re-masked (``select``):
- ``random``: a seeded random subset (per image, from its own generator);
- ``unlikely``: the tokens the adapted model finds least likely in the new style (one all-mask forward).
See docs/experiments.md ("Restyling") for how the two compare.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from .adapters import attached
from .muse.sampler import SampleConfig, chunks, decode_tokens, guided_logits_fn, tokens_to_images
from .oracle import to_tensor

SELECTS = ("random", "unlikely")


@dataclass(frozen=True)
class RestyleConfig:
    strength: float = 0.6  # fraction of tokens re-masked: 0 < strength <= 1 (1 = sample from scratch)
    select: str = "unlikely"  # measured: more style at the same content kept than "random" (docs/experiments.md)

    def __post_init__(self):
        if not (0 < self.strength <= 1) or math.isnan(self.strength):
            raise ValueError(f"strength must be in (0, 1] (the fraction of tokens re-masked), got {self.strength}")
        if self.select not in SELECTS:
            raise ValueError(f"unknown selection {self.select!r}; expected one of {', '.join(SELECTS)}")


def first_step(strength: float, steps: int) -> int:
    """The first step whose schedule masks no more than ``strength`` of the tokens (cosine: cos(pi/2 * t));
    at most the last step, which always fills what is left."""
    return min(steps - 1, next(s for s in range(steps + 1) if math.cos(math.pi / 2 * s / steps) <= strength + 1e-9))


@torch.no_grad()
def remask(tokens: torch.Tensor, count: int, select: str, mask_id: int, seed: int, logits=None) -> torch.Tensor:
    """``tokens`` (B, N) with ``count`` positions per row set to ``mask_id``; ``logits`` (B, N, K) of the
    adapted model with everything masked, for ``select="unlikely"``."""
    b, n = tokens.shape
    if count == 0:
        return tokens.clone()
    if select == "random":
        # its own stream (seed + i, offset), so the decoding generators stay those of `sample`
        score = torch.stack([torch.rand(n, generator=torch.Generator().manual_seed(seed + i + 7919))
                             for i in range(b)])
    else:
        score = logits.float().log_softmax(-1).gather(-1, tokens[..., None].to(logits.device)).squeeze(-1).cpu()
    chosen = score.argsort(-1)[:, :count]  # lowest scores: re-masked
    out = tokens.clone()
    out.scatter_(1, chosen, mask_id)
    return out


@torch.no_grad()
def restyle(base, images: list[np.ndarray], prompts: list[str], cfg: SampleConfig, rc: RestyleConfig,
            adapter=None, lambda_a: float = 0.0, lambda_b: float = 1.0) -> tuple[np.ndarray, torch.Tensor]:
    """Restyled (B, H, W, 3) uint8 images and the re-masked grids (B, N) (True where re-drawn).

    Image i keeps seed ``cfg.seed + i``, as in ``sample``."""
    # each distinct picture is encoded once (restyling one picture n times passes it n times)
    distinct = {im.tobytes(): im for im in images}
    keys = list(distinct)
    codes = base.vq.encode_indices(to_tensor(list(distinct.values())).to(base.device)).flatten(1).cpu()
    tokens = codes[[keys.index(im.tobytes()) for im in images]]  # (B, N)
    n = tokens.shape[1]
    count = round(rc.strength * n)
    ids, starts = [], []
    with attached(adapter, base.transformer) if adapter is not None else nullcontext():
        for part, sub in chunks(base, len(images), cfg):  # bounded logits, as in `sample` (5 a call on aMUSEd-512)
            chunk = tokens[part]
            fn = guided_logits_fn(base, prompts[part], lambda_b=lambda_b, adapter=adapter, lambda_a=lambda_a)
            logits = None
            if rc.select == "unlikely" and count:
                logits = fn(torch.full_like(chunk, base.mask_id).to(base.device))
            start = remask(chunk, count, rc.select, base.mask_id, sub.seed, logits)
            del logits
            if count:
                chunk = decode_tokens(fn, len(chunk), n, base.mask_id, sub, base.device, start=start,
                                      first_step=first_step(count / n, cfg.steps)).cpu()
            ids.append(chunk)
            starts.append(start == base.mask_id)
    return tokens_to_images(base, torch.cat(ids)), torch.cat(starts)
