"""Benchmarks: measured side by side in one run, printed as ratios (never asserted in tests)."""

from __future__ import annotations

import time

import torch

from . import adapters
from .muse.sampler import SampleConfig, decode_tokens, guided_logits_fn


def _timed(fn, repeats: int = 2) -> tuple[float, object]:
    """Best wall time of ``repeats`` runs (after one warm-up), and the last result."""
    fn()
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


@torch.no_grad()
def bench_sampling(base, n: int = 16, steps: int = 12, repeats: int = 2) -> dict:
    """(a) base sampling with CFG, images/s; (b) adapter-guided sampling, the three branches batched
    into one forward vs three forwards per step: same tokens, and the speed ratio."""
    cfg = SampleConfig(steps=steps, seed=0)
    prompts = ["a fish in neon glow style"] * n
    n_tok = base.grid**2

    def run(**kw):
        return decode_tokens(guided_logits_fn(base, prompts, lambda_b=5.0, **kw), n, n_tok, base.mask_id, cfg)

    t_cfg, _ = _timed(run, repeats)
    theta = adapters.build(adapters.AdapterConfig("bottleneck", 8), base.transformer)
    torch.manual_seed(0)
    for p in theta.parameters():
        p.data.normal_(0, 0.02)
    theta.attach(base.transformer)
    try:
        t_batched, ids_batched = _timed(lambda: run(adapter=theta, lambda_a=1.0), repeats)
        t_separate, ids_separate = _timed(lambda: run(adapter=theta, lambda_a=1.0, separate=True), repeats)
    finally:
        theta.detach()
    return {
        "images": n, "steps": steps, "threads": torch.get_num_threads(),
        "cfg_images_per_s": n / t_cfg,
        "guided_batched_s": t_batched, "guided_separate_s": t_separate,
        "guided_speedup": t_separate / t_batched,
        "guided_same_tokens": bool(torch.equal(ids_batched, ids_separate)),
    }
