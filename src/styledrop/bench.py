"""Benchmarks: measured side by side in one run, printed as ratios (never asserted in tests).

The reference loops are written the way diffusers' own code does the same job, on the same model
and settings: adapter training as ``examples/amused/train_amused.py`` (VQ-encode the images and
run the text encoder at every step), sampling as ``AmusedPipeline`` (``AmusedScheduler.step`` and
one transformer call per guidance branch). Plain CFG sampling is also timed against the real ``AmusedPipeline``.
"""

from __future__ import annotations

import resource
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from . import adapters, world
from .muse import transformer as tr
from .muse.sampler import SampleConfig, decode_tokens, guided_logits_fn
from .muse.train_transformer import masked_token_loss
from .oracle import to_tensor
from .train import reference_tokens


def _timed(fn, repeats: int = 2) -> tuple[float, object]:
    """Best wall time of ``repeats`` runs (after one warm-up), and the last result."""
    fn()
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _side_by_side(*fns, repeats: int = 3) -> tuple[list[float], list]:
    """Best times of ``fns`` run in turn (after one warm-up each), so that the machine's drifting speed
    (a shared VM here: ±20% over a minute) hits all alike; and their last results."""
    for fn in fns:
        fn()
    best, results = [float("inf")] * len(fns), [None] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            results[i] = fn()
            best[i] = min(best[i], time.perf_counter() - t)
    return best, results


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
        (t_batched, t_separate), (ids_batched, ids_separate) = _side_by_side(
            lambda: run(adapter=theta, lambda_a=1.0), lambda: run(adapter=theta, lambda_a=1.0, separate=True),
            repeats=repeats)
    finally:
        theta.detach()
    return {
        "images": n, "steps": steps, "threads": torch.get_num_threads(),
        "cfg_images_per_s": n / t_cfg,
        "guided_batched_s": t_batched, "guided_separate_s": t_separate,
        "guided_speedup": t_separate / t_batched,
        "guided_same_tokens": bool(torch.equal(ids_batched, ids_separate)),
    }


def _theta(base, kind: str = "bottleneck", rank: int = 8):
    torch.manual_seed(0)
    theta = adapters.build(adapters.AdapterConfig(kind, rank), base.transformer)
    for p in theta.parameters():
        p.data.normal_(0, 0.02)
    return theta


@torch.no_grad()
def reference_sampling(base, theta, prompts: list[str], steps: int, lambda_a: float, lambda_b: float, seed: int = 0):
    """AmusedPipeline's way: AmusedScheduler, text encoded in the loop's setup, three separate transformer
    calls per step for Ĝθ(t), G(t), G(n) (the adapter switched on for the first only)."""
    from diffusers import AmusedScheduler
    b, g = len(prompts), torch.Generator().manual_seed(seed)
    sched = AmusedScheduler(mask_token_id=base.mask_id, masking_schedule="cosine")
    sched.set_timesteps(steps, temperature=(2, 0))
    t_h, t_p = base.encode_text(prompts)
    n_h, n_p = base.encode_empty(b)
    latents = torch.full((b, base.grid, base.grid), base.mask_id, dtype=torch.long)
    conds = tr.micro_conds(b, base.image_size)

    def call(h, p, on):
        theta.gate = torch.full((b,), float(on))
        try:
            return base.transformer(latents, encoder_hidden_states=h, pooled_text_emb=p, micro_conds=conds)
        finally:
            theta.gate = None

    for timestep in sched.timesteps:
        a, c, u = call(t_h, t_p, 1), call(t_h, t_p, 0), call(n_h, n_p, 0)
        logits = a + lambda_a * (a - c) + lambda_b * (c - u)
        latents = sched.step(logits, timestep, latents, generator=g).prev_sample
    return latents


def bench_guided_vs_reference(base, n: int = 16, steps: int = 12, repeats: int = 2) -> dict:
    """Our adapter-guided sampler (one batched forward per step) vs the AmusedPipeline-style loop."""
    prompts = ["a fish in neon glow style"] * n
    theta = _theta(base).attach(base.transformer)
    try:
        (ours, ref), _ = _side_by_side(
            lambda: decode_tokens(guided_logits_fn(base, prompts, lambda_b=1.5, adapter=theta, lambda_a=0.5), n,
                                  base.grid**2, base.mask_id, SampleConfig(steps=steps)),
            lambda: reference_sampling(base, theta, prompts, steps, 0.5, 1.5), repeats=repeats)
    finally:
        theta.detach()
    return {"sampling_ours_s": ours, "sampling_reference_s": ref, "sampling_speedup": ref / ours}


@torch.no_grad()
def bench_pipeline(base, n: int = 16, steps: int = 12, repeats: int = 2, guidance: float = 2.0) -> dict:
    """Our CFG sampler vs diffusers' own ``AmusedPipeline`` (tokens out, ``output_type="latent"``) on the same
    G, text encoder and VQ, the same prompts, steps and guidance (its scale s is our λB = s - 1). Needs a base
    loaded from a folder (the pipeline reads its scheduler there)."""
    if base.path is None:
        return {}
    try:  # deprecated in diffusers 0.33.1 (moved to pipelines/deprecated/); our core never uses it
        from diffusers import AmusedPipeline
    except ImportError:
        return {"pipeline_skipped": "this diffusers has no AmusedPipeline any more"}
    pipe = AmusedPipeline.from_pretrained(base.path, transformer=base.transformer, vqvae=base.vq,
                                          text_encoder=base.text_encoder, tokenizer=base.tokenizer)
    pipe.set_progress_bar_config(disable=True)
    prompts = ["a fish in neon glow style"] * n
    cfg = SampleConfig(steps=steps, seed=0)
    (ours, theirs), _ = _side_by_side(
        lambda: decode_tokens(guided_logits_fn(base, prompts, lambda_b=guidance - 1), n, base.grid**2,
                              base.mask_id, cfg),
        lambda: pipe(prompts, num_inference_steps=steps, guidance_scale=guidance, output_type="latent",
                     generator=torch.Generator().manual_seed(0)).images, repeats=repeats)
    return {"pipeline_ours_s": ours, "pipeline_diffusers_s": theirs, "pipeline_speedup": theirs / ours}


def _matmul(size: int = 2048):
    """One fp32 matmul of two size x size matrices, and its FLOP count: this machine's matmul peak is
    the yardstick for training."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    return (lambda: a @ b), 2 * size**3


def bench_training(base, batch: int = 8, steps: int = 10, kind: str = "bottleneck") -> dict:
    """One adapter-training step: ours (VQ tokens and text embeddings cached before the loop; G as
    ``base.net``, compiled after ``base.compile()``) vs the train_amused.py way (both recomputed every step,
    G called eagerly), on the same G, adapter and batch. Also the step's FLOP count (torch's counter) over
    its time, as a fraction of the fp32 matmul peak timed in turn with the two steps."""
    samples = [world.sample(i, 0, [("house", "lava")]) for i in range(batch)]
    images = [s.image for s in samples]
    caption = "a house in molten lava style"
    theta = _theta(base, kind).attach(base.transformer)
    opt = torch.optim.AdamW(theta.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    tokens = reference_tokens(base, images, mirror=False)
    hidden, pooled = base.encode_text([caption] * batch)

    def step(model, tok, h, p):
        loss = masked_token_loss(model, tok, h, p, base.mask_id, base.image_size, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def ours():
        step(base.net, tokens, hidden, pooled)

    def reference():
        with torch.no_grad():
            tok = base.vq.encode_indices(to_tensor(images)).flatten(1)
            h, p = base.encode_text([caption] * batch)
        step(base.transformer, tok, h, p)

    matmul, matmul_flops = _matmul()
    try:
        (t_ours, t_ref, t_mm), _ = _side_by_side(ours, reference, matmul, repeats=steps)
        with FlopCounterMode(display=False) as counter:
            step(base.transformer, tokens, hidden, pooled)  # the same arithmetic as ``ours``, counted eagerly
        flops = counter.get_total_flops()
    finally:
        theta.detach()
    peak = matmul_flops / t_mm
    return {"train_batch": batch, "train_ours_s": t_ours, "train_reference_s": t_ref,
            "train_speedup": t_ref / t_ours, "train_flops_per_step": flops,
            "train_flops_per_s": flops / t_ours, "matmul_peak_flops_per_s": peak,
            "train_fraction_of_peak": flops / t_ours / peak}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def bench_all(base, n: int = 16, steps: int = 12, repeats: int = 2, batch: int = 8, compiled: bool = True) -> dict:
    """Every measurement with G run eagerly; then, with ``compiled``, ours again with G compiled
    (``base.compile()``) against the same eager reference loops, under keys prefixed ``compiled_``."""
    out = bench_sampling(base, n, steps, repeats)
    out |= bench_guided_vs_reference(base, n, steps, repeats)
    out |= bench_pipeline(base, n, steps, repeats)
    out |= bench_training(base, batch)
    out["peak_rss_mb"] = peak_rss_mb()
    if compiled:
        base.compile()
        c = bench_sampling(base, n, steps, repeats) | bench_guided_vs_reference(base, n, steps, repeats)
        c |= bench_pipeline(base, n, steps, repeats)
        c |= bench_training(base, batch)
        c["peak_rss_mb"] = peak_rss_mb()  # compiling holds its own memory
        out |= {f"compiled_{k}": v for k, v in c.items() if k not in ("images", "steps", "threads", "train_batch")}
    return {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in out.items()}
