"""Sampler S: MaskGIT iterative decoding with classifier-free guidance (our own loop).

Start from an all-mask grid; at each of ``steps`` steps run G once on the batched branches
(conditional and unconditional), mix their logits, then let ``schedule.unmask_step`` fix the
most confident tokens. Image i draws its randomness from its own generator seeded ``seed + i``,
so an image does not change with the batch it was made in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch

from ..oracle import to_images
from . import schedule
from . import transformer as tr


@dataclass(frozen=True)
class SampleConfig:
    steps: int = 12
    # Tuned on the tiny base (192 images per cell): oracle content 0.91 / 0.82 on pretraining / held-out pairs
    # at guidance 2, token temperature 0.7; 0.71 / 0.70 at guidance 3, 1.0; 0.49 at guidance 4 (docs/experiments.md).
    guidance: float = 2.0  # classifier-free guidance scale; 0 = unguided conditional
    temperature: float = 1.0  # of the confidence noise, annealed to 0 over the steps
    seed: int = 0
    token_temperature: float = 0.7  # of each token's sampling: < 1 sharpens
    confidence: str = "sampled"  # which positions to fix first: "sampled" (MaskGIT) or "entropy"
    block: int = 1  # fix whole block x block squares of tokens at a time (for a G trained with block masking)

    def __post_init__(self):
        if not 1 <= self.steps <= 256:
            raise ValueError(f"steps must be in 1..256, got {self.steps}")
        if not 0 <= self.guidance <= 50:
            raise ValueError(f"guidance must be in 0..50, got {self.guidance}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.token_temperature <= 10:
            raise ValueError(f"token temperature must be in (0, 10], got {self.token_temperature}")
        if self.confidence not in ("sampled", "entropy"):
            raise ValueError(f"confidence must be 'sampled' or 'entropy', got {self.confidence!r}")
        if self.block not in (1, 2, 4):
            raise ValueError(f"block must be 1, 2 or 4 tokens a side, got {self.block}")


# StyleDrop guidance defaults. The paper uses λB = 5 on Muse; the tiny base collapses beyond guidance ~3
# (λB = 2), and over the held-out styles λB 1.0 beat 1.5 on style, content and leakage (docs/experiments.md).
DEFAULT_LAMBDA_A = 0.5
DEFAULT_LAMBDA_B = 1.0

LogitsFn = Callable[[torch.Tensor], torch.Tensor]  # ids (B, N) -> logits (B, N, K)


@torch.no_grad()
def decode_tokens(logits_fn: LogitsFn, batch: int, n_tokens: int, mask_id: int, cfg: SampleConfig,
                  device="cpu", start: torch.Tensor | None = None, first_step: int = 0) -> torch.Tensor:
    """Run the MaskGIT loop; returns token ids (B, N) with no mask left.

    ``start`` (B, N): begin from these ids instead of an all-mask grid; their known tokens are never re-masked.
    ``first_step``: skip the schedule's first steps (editing: start where the schedule masks what is masked)."""
    generators = [torch.Generator(device="cpu").manual_seed(cfg.seed + i) for i in range(batch)]
    if start is None:
        ids = torch.full((batch, n_tokens), mask_id, dtype=torch.long, device=device)
    else:
        ids = start.to(device)
    for step in range(first_step, cfg.steps):
        ids = schedule.unmask_step(ids, logits_fn(ids), step, cfg.steps, mask_id,
                                   generators=generators, temperature=cfg.temperature,
                                   token_temperature=cfg.token_temperature, confidence=cfg.confidence,
                                   block=cfg.block)
    assert not (ids == mask_id).any()
    return ids


def gated_logits(base, gated: list[tuple[object, torch.Tensor]], ids, hidden, pooled) -> torch.Tensor:
    """One G forward with each attached adapter switched on for the rows where its gate is 1."""
    for adapter, gate in gated:
        adapter.gate = gate
    try:
        return tr.logits(base.net, ids, hidden, pooled, base.image_size)
    finally:
        for adapter, _ in gated:
            adapter.gate = None


def guided_logits_fn(base, prompts: list[str], *, lambda_b: float, negative: str = "", adapter=None,
                     lambda_a: float = 0.0, separate: bool = False) -> LogitsFn:
    """StyleDrop's guidance: Ĝθ(t) + λA·(Ĝθ(t) − G(t)) + λB·(G(t) − G(n)).

    Ĝθ is G with ``adapter`` on, t the prompts, n the negative prompt ("" = unconditional).
    Without an adapter this is classifier-free guidance with scale λB + 1. All branches run as
    one batched forward (the adapter gated on for the first rows only); ``separate=True`` runs
    one forward per branch instead, which gives the same logits and exists for the benchmark.
    """
    b = len(prompts)
    t_h, t_p = base.encode_text(prompts)
    n_h, n_p = base.encode_text([negative] * b) if negative else base.encode_empty(b)
    a_h, a_p = (adapter.encode_text(base, prompts) if hasattr(adapter, "encode_text")  # a token adapter: Tθ(t)
                else (t_h, t_p))
    branches = ([(a_h, a_p, 1.0)] if adapter is not None else []) + [(t_h, t_p, 0.0), (n_h, n_p, 0.0)]
    if adapter is None and lambda_b == 0:
        branches = branches[:1]
    hidden = torch.cat([h for h, _, _ in branches])
    pooled = torch.cat([p for _, p, _ in branches])
    gate = torch.cat([torch.full((b,), g) for _, _, g in branches])

    def forward(ids, h, p, g):
        return gated_logits(base, [(adapter, g)] if adapter is not None else [], ids, h, p)

    def fn(ids):
        k = len(branches)
        if separate:
            outs = [forward(ids, h, p, torch.full((b,), g)) for h, p, g in branches]
        else:
            outs = forward(ids.repeat(k, 1), hidden, pooled, gate).split(b)
        if k == 1:
            return outs[0]
        *a, c, u = outs
        a = a[0] if a else c
        return a + lambda_a * (a - c) + lambda_b * (c - u)

    return fn


def cfg_logits_fn(base, prompts: list[str], guidance: float, negative: str = "") -> LogitsFn:
    """Classifier-free guidance u + g·(c − u), i.e. the StyleDrop formula with no adapter, λB = g − 1."""
    if guidance == 0:
        return guided_logits_fn(base, prompts, lambda_b=0.0)
    return guided_logits_fn(base, prompts, lambda_b=guidance - 1, negative=negative)


@torch.no_grad()
def tokens_to_images(base, ids: torch.Tensor) -> np.ndarray:
    """Token ids (B, N) -> uint8 images (B, H, W, 3)."""
    b = ids.shape[0]
    return to_images(base.vq.decode_indices(ids.view(b, base.grid, base.grid)))


LOGITS_BYTES = 2**29  # 0.5 GB of fp32 logits a call: 16 prompts at 256 px on aMUSEd (3 guidance rows each), 5 at 512


def logits_bytes_per_prompt(base) -> int:
    """fp32 logits of one prompt's three guidance rows over the whole grid and vocabulary."""
    return 3 * base.grid**2 * base.transformer.config.vocab_size * 4


def max_prompts(base, batch: int) -> int:
    """How many prompts to sample at once: ``batch``, or fewer where their logits would pass ``LOGITS_BYTES``."""
    return max(1, min(batch, LOGITS_BYTES // logits_bytes_per_prompt(base)))


def chunks(base, n: int, cfg: SampleConfig, batch: int = 16):
    """(slice, cfg) for each group of at most ``max_prompts`` of ``n`` pictures; picture i keeps seed
    ``cfg.seed + i`` whatever the grouping, so the bytes do not depend on it."""
    step = max_prompts(base, batch)
    for i in range(0, n, step):
        yield slice(i, i + step), replace(cfg, seed=cfg.seed + i)


@torch.no_grad()
def generate(base, prompts: list[str], cfg: SampleConfig, negative: str = "", batch: int = 16,
             logits_fn_for=None) -> np.ndarray:
    """Images (B, H, W, 3) uint8 for ``prompts``: the base model alone with CFG, or any guidance
    given as ``logits_fn_for(prompts) -> LogitsFn`` (adapter guidance, composition). At most ``batch`` prompts
    go through G at once, fewer where their logits would pass ``LOGITS_BYTES`` (aMUSEd at 512 px)."""
    out = []
    for part, sub in chunks(base, len(prompts), cfg, batch):
        chunk = prompts[part]
        if logits_fn_for is None:
            fn = cfg_logits_fn(base, chunk, cfg.guidance, negative)
        else:
            fn = logits_fn_for(chunk)
        ids = decode_tokens(fn, len(chunk), base.grid**2, base.mask_id, sub, base.device)
        out.append(tokens_to_images(base, ids))
    return np.concatenate(out)
