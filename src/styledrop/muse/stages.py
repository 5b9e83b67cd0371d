"""A resumable training loop shared by the pretraining stages (VQ, CLIP, transformer).

Each stage supplies a ``step(i) -> {loss name: value}`` function; this loop owns the
optimizer bookkeeping, the learning-rate schedule, checkpoints every ``every`` steps
(safetensors: weights, flattened optimizer state, random-number states, step) and resuming from them, so that
a resumed run draws the same batches and masks as one that was never stopped.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch

from ..io import UserError, load_optimizer_tensors, load_tensors, optimizer_tensors, save_tensors


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def check_recipe(what, found: dict | None, expected: dict | None) -> None:
    """Refuse, naming the keys that differ, something made under another recipe (none recorded: trusted)."""
    if found is None or expected is None or found == expected:
        return
    changed = sorted(k for k in set(expected) | set(found) if expected.get(k) != found.get(k))
    raise UserError(f"{what} was made with another recipe ({', '.join(changed)} differ): "
                    f"delete it or use another work folder")


def run(*, model: torch.nn.Module, opt: torch.optim.Optimizer, steps: int, step: Callable[[int], dict],
        ckpt: Path | None = None, every: int = 200, warmup: int = 100,
        progress: Callable[[int, int, dict], None] | None = None, save: bool = True,
        recipe: dict | None = None, generators: dict[str, torch.Generator] | None = None) -> None:
    """``save=False``: read ``ckpt`` to resume but never write it (the other processes of a multi-process run).
    ``recipe``: what made the run (JSON-able); a checkpoint written under another recipe is refused, not resumed.
    ``generators``: the step's random generators by name; their states (and torch's global one, for dropout and
    the like) go into the checkpoint and come back on resume. A checkpoint without them resumes from the seeds."""
    generators = generators or {}
    base_lrs = [g["lr"] for g in opt.param_groups]
    start = 0
    if ckpt is not None and Path(ckpt).is_file():
        tensors, meta = load_tensors(ckpt)
        check_recipe(ckpt, meta.get("recipe"), recipe)
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        load_optimizer_tensors(opt, tensors)
        for name, g in generators.items():
            if f"rng.{name}" in tensors:
                g.set_state(tensors[f"rng.{name}"])
        if "rng.torch" in tensors:
            torch.set_rng_state(tensors["rng.torch"])
        start = meta["step"]
    for i in range(start, steps):
        for g, lr in zip(opt.param_groups, base_lrs):
            g["lr"] = lr * warmup_cosine(i, steps, min(warmup, steps // 10 + 1))
        losses = step(i)
        if progress:
            progress(i + 1, steps, losses)
        if save and ckpt is not None and ((i + 1) % every == 0 or i + 1 == steps):
            rng = {f"rng.{n}": g.get_state() for n, g in generators.items()} | {"rng.torch": torch.get_rng_state()}
            tensors = {f"model.{k}": v for k, v in model.state_dict().items()} | optimizer_tensors(opt) | rng
            save_tensors(ckpt, tensors, {"step": i + 1} | ({"recipe": recipe} if recipe is not None else {}))
    for g, lr in zip(opt.param_groups, base_lrs):
        g["lr"] = lr
