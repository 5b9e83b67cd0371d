"""Per-base defaults: the sampling and adapter settings a base is used with unless a flag says otherwise.

A base folder may carry ``styledrop.json`` (``{"settings": {"lambda_b": 3.0, ...}, "source": "..."}``): its values
win over the built-in ones below. Without it, the tiny embedded base gets the values tuned on it, and a real
aMUSEd folder (256 or 512 px) gets documented defaults for Muse-like bases, each with where it comes from. An
explicit command-line flag always wins over both. Every run says which settings it used and why.
"""

from __future__ import annotations

import json
from pathlib import Path

from .io import UserError

FILE = "styledrop.json"
KEYS = ("lambda_a", "lambda_b", "sample_steps", "temperature", "token_temperature", "adapter", "rank", "lr",
        "train_steps", "batch")

# Tuned on the tiny base (docs/experiments.md: "Adapter recipe" and the sampler sweeps).
TINY = {"lambda_a": 0.5, "lambda_b": 1.0, "sample_steps": 12, "temperature": 1.0, "token_temperature": 0.7,
        "adapter": "bottleneck", "rank": 8, "lr": 1e-3, "train_steps": 200, "batch": 8}
TINY_SOURCE = "tuned on the tiny base (docs/experiments.md)"

# Muse-like bases (a real aMUSEd folder), by picture size. Sampling: the StyleDrop paper (Sohn et al. 2023) and
# StyleDrop-PyTorch sample Muse with λA 2, λB 5 and 36 decoding steps; diffusers' AmusedPipeline anneals its
# confidence noise from 2 (temperature=(2, 0)) and samples tokens at temperature 1. Adapter: diffusers'
# examples/amused StyleDrop recipe, LoRA at batch 1, lr 4e-4 (256 px) / 1e-3 (512 px), "decent results in
# 1500-2000 steps" (we take 1500); its LoRA rank 16 is our rank for either kind.
_MUSE_SAMPLING = {"lambda_a": 2.0, "lambda_b": 5.0, "sample_steps": 36, "temperature": 2.0, "token_temperature": 1.0}
AMUSED = {
    256: _MUSE_SAMPLING | {"adapter": "lora", "rank": 16, "lr": 4e-4, "train_steps": 1500, "batch": 1},
    512: _MUSE_SAMPLING | {"adapter": "lora", "rank": 16, "lr": 1e-3, "train_steps": 1500, "batch": 1},
}
AMUSED_SOURCE = {"lambda_a": "StyleDrop paper", "lambda_b": "StyleDrop paper", "sample_steps": "StyleDrop paper",
                 "temperature": "diffusers AmusedPipeline", "token_temperature": "diffusers AmusedPipeline",
                 "adapter": "diffusers amused StyleDrop example", "rank": "diffusers amused StyleDrop example",
                 "lr": "diffusers amused StyleDrop example", "train_steps": "diffusers amused StyleDrop example",
                 "batch": "diffusers amused StyleDrop example"}


def for_base(path: Path | None, image_size: int, knows_world: bool) -> dict[str, tuple[object, str]]:
    """{setting: (value, where it came from)} for a base folder."""
    if knows_world:
        out = {k: (v, TINY_SOURCE) for k, v in TINY.items()}
    else:
        size = min(AMUSED, key=lambda s: abs(s - image_size))  # 256 or 512: whichever the base is nearer
        out = {k: (v, f"aMUSEd-{size} default: {AMUSED_SOURCE[k]}") for k, v in AMUSED[size].items()}
    if path is not None and (Path(path) / FILE).is_file():
        own = read(Path(path) / FILE)
        out |= {k: (v, f"{FILE} in the base folder" + (f" ({own['source']})" if own.get("source") else ""))
                for k, v in own["settings"].items()}
    return out


def read(path: Path) -> dict:
    """A base's ``styledrop.json``; unknown keys and wrong types are refused, naming them."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is not readable JSON ({e})") from None
    settings = data.get("settings") if isinstance(data, dict) else None
    if not isinstance(settings, dict):
        raise UserError(f"{path}: expected {{\"settings\": {{...}}}} with some of {', '.join(KEYS)}")
    unknown = sorted(set(settings) - set(KEYS))
    if unknown:
        raise UserError(f"{path}: unknown settings {', '.join(unknown)}; expected some of {', '.join(KEYS)}")
    for k, v in settings.items():
        want = str if k == "adapter" else (int if k in ("sample_steps", "rank", "train_steps", "batch") else float)
        if not isinstance(v, (int, float) if want is float else want) or isinstance(v, bool):
            raise UserError(f"{path}: {k} must be a {want.__name__}, got {v!r}")
    return data


def settle(base, given: dict[str, object]) -> tuple[dict[str, object], dict[str, str]]:
    """Fill the settings left as None in ``given`` from the base's defaults: (values, where each came from)."""
    defaults = for_base(base.path, base.image_size, base.knows_world)
    values, sources = {}, {}
    for k, v in given.items():
        if v is None:
            values[k], sources[k] = defaults[k]
        else:
            values[k], sources[k] = v, "given"
    return values, sources


def settle_all(base, **given) -> tuple[dict[str, object], dict[str, str]]:
    """Every setting of ``KEYS``: those given (not None), the rest the base's defaults (what benchmarks run with)."""
    unknown = set(given) - set(KEYS)
    if unknown:
        raise ValueError(f"unknown settings {', '.join(sorted(unknown))}; expected some of {', '.join(KEYS)}")
    return settle(base, {k: given.get(k) for k in KEYS})


def describe(values: dict, sources: dict) -> str:
    """One line, the settings grouped by where they came from: 'λA 2.0, λB 5.0 (aMUSEd-256 default: StyleDrop
    paper), lr 0.001 (given)'."""
    names = {"lambda_a": "λA", "lambda_b": "λB", "sample_steps": "sampling steps", "train_steps": "training steps"}
    groups: dict[str, list[str]] = {}
    for k, v in values.items():
        groups.setdefault(sources[k], []).append(f"{names.get(k, k)} {v}")
    return ", ".join(f"{', '.join(items)} ({source})" for source, items in groups.items())
