"""Sampler S: MaskGIT iterative decoding with classifier-free guidance (our own loop).

Start from an all-mask grid; at each of ``steps`` steps run G once on the batched branches
(conditional and unconditional), mix their logits, then let ``schedule.unmask_step`` fix the
most confident tokens. Image i draws its randomness from its own generator seeded ``seed + i``,
so an image does not change with the batch it was made in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from . import schedule
from . import transformer as tr


@dataclass(frozen=True)
class SampleConfig:
    steps: int = 12
    guidance: float = 3.0  # classifier-free guidance scale; 0 = unguided conditional
    temperature: float = 1.0  # of the confidence noise, annealed to 0 over the steps
    seed: int = 0

    def __post_init__(self):
        if not 1 <= self.steps <= 256:
            raise ValueError(f"steps must be in 1..256, got {self.steps}")
        if not 0 <= self.guidance <= 50:
            raise ValueError(f"guidance must be in 0..50, got {self.guidance}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")


LogitsFn = Callable[[torch.Tensor], torch.Tensor]  # ids (B, N) -> logits (B, N, K)


@torch.no_grad()
def decode_tokens(logits_fn: LogitsFn, batch: int, n_tokens: int, mask_id: int, cfg: SampleConfig,
                  device="cpu") -> torch.Tensor:
    """Run the MaskGIT loop; returns token ids (B, N) with no mask left."""
    generators = [torch.Generator(device="cpu").manual_seed(cfg.seed + i) for i in range(batch)]
    ids = torch.full((batch, n_tokens), mask_id, dtype=torch.long, device=device)
    for step in range(cfg.steps):
        ids = schedule.unmask_step(ids, logits_fn(ids), step, cfg.steps, mask_id,
                                   generators=generators, temperature=cfg.temperature)
    assert not (ids == mask_id).any()
    return ids


def cfg_logits_fn(base, prompts: list[str], guidance: float, negative: str = "") -> LogitsFn:
    """Classifier-free guidance, both branches in one forward: u + g * (c - u)."""
    cond_h, cond_p = base.encode_text(prompts)
    if negative:
        neg_h, neg_p = base.encode_text([negative] * len(prompts))
    else:
        neg_h, neg_p = base.encode_empty(len(prompts))
    hidden, pooled = torch.cat([cond_h, neg_h]), torch.cat([cond_p, neg_p])
    b = len(prompts)

    def fn(ids):
        if guidance == 0:
            return tr.logits(base.transformer, ids, cond_h, cond_p, base.image_size)
        out = tr.logits(base.transformer, torch.cat([ids, ids]), hidden, pooled, base.image_size)
        c, u = out[:b], out[b:]
        return u + guidance * (c - u)

    return fn


@torch.no_grad()
def tokens_to_images(base, ids: torch.Tensor) -> np.ndarray:
    """Token ids (B, N) -> uint8 images (B, H, W, 3)."""
    b = ids.shape[0]
    x = base.vq.decode_indices(ids.view(b, base.grid, base.grid))
    return ((x.float().clamp(-1, 1) + 1) * 127.5 + 0.5).byte().permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def generate(base, prompts: list[str], cfg: SampleConfig, negative: str = "", batch: int = 16) -> np.ndarray:
    """Images (B, H, W, 3) uint8 for ``prompts`` with the base model alone."""
    out = []
    for i in range(0, len(prompts), batch):
        chunk = prompts[i:i + batch]
        fn = cfg_logits_fn(base, chunk, cfg.guidance, negative)
        sub = SampleConfig(cfg.steps, cfg.guidance, cfg.temperature, cfg.seed + i)
        ids = decode_tokens(fn, len(chunk), base.grid**2, base.mask_id, sub, base.device)
        out.append(tokens_to_images(base, ids))
    return np.concatenate(out)
