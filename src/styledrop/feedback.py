"""Iterative training with feedback (the paper's round 2).

A round-1 adapter trained on one image often leaks the reference's subject into every picture.
Round 2: generate many images for varied content prompts with round 1, keep a few good ones,
and train a NEW adapter (same loss) on the reference plus the kept images, each captioned with
its own prompt and the style descriptor. Selection:

- ``clip``: per prompt, the image with the best CLIP text-image score (against the content prompt);
  ``clip_i_weight`` > 0 adds CLIP similarity to the reference (our extension, off by default);
- ``oracle``: stands in for a human rater: images showing the prompt's content AND the reference's
  style, most confident first, at most ``keep`` of them (the paper's raters kept ≤10);
- ``random``: one random image per prompt (the paper's control);
- ``manual``: the image ids a person chose.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from . import world
from .adapters import attached
from .evaluate import clip_i, clip_t, style_prompt
from .io import UserError
from .muse.sampler import DEFAULT_LAMBDA_A, DEFAULT_LAMBDA_B, SampleConfig, generate, guided_logits_fn
from .oracle import Oracles
from .train import TrainConfig, train_adapter

METHODS = ("clip", "oracle", "random", "manual")


@dataclass(frozen=True)
class FeedbackConfig:
    select: str = "clip"
    prompts: int = 30
    per_prompt: int = 16
    keep: int = 10  # at most, for oracle selection
    clip_i_weight: float = 0.0
    lambda_a: float = DEFAULT_LAMBDA_A
    lambda_b: float = DEFAULT_LAMBDA_B
    steps: int = 12
    seed: int = 0

    def __post_init__(self):
        if self.select not in METHODS:
            raise ValueError(f"unknown selection {self.select!r}; expected one of {', '.join(METHODS)}")
        if self.prompts < 1 or self.per_prompt < 1 or self.keep < 1:
            raise ValueError("--prompts, --per-prompt and keep must be at least 1")


def content_prompts(n: int, exclude: str | None) -> list[tuple[str, str]]:
    """``n`` (content, prompt) pairs cycling through the world's contents, the reference's left out."""
    contents = [c for c in world.CONTENTS if c != exclude]
    return [(contents[i % len(contents)], world.caption(contents[i % len(contents)], None)) for i in range(n)]


def generate_candidates(base, adapter, descriptor: str, prompts: list[str], cfg: FeedbackConfig) -> np.ndarray:
    full = [style_prompt(p, descriptor) for p in prompts for _ in range(cfg.per_prompt)]
    with attached(adapter, base.transformer):
        return generate(base, full, SampleConfig(steps=cfg.steps, seed=cfg.seed), logits_fn_for=lambda ps:
                        guided_logits_fn(base, ps, lambda_b=cfg.lambda_b, adapter=adapter, lambda_a=cfg.lambda_a))


def score(base, oracles: Oracles, images: np.ndarray, prompts: list[str], per_prompt: int,
          reference: np.ndarray) -> list[dict]:
    """Per image: its prompt, CLIP-T (vs the content prompt), CLIP-I (vs the reference), oracle view."""
    texts = [p for p in prompts for _ in range(per_prompt)]
    rows = [{"id": i, "prompt": t} for i, t in enumerate(texts)]
    if base.scorer is not None:
        ct = clip_t(base.scorer, base.tokenizer, list(images), texts)
        ci = clip_i(base.scorer, list(images), reference)
        for r, a, b in zip(rows, ct.tolist(), ci.tolist()):
            r |= {"clip_t": a, "clip_i": b}
    for r, p in zip(rows, oracles.classify(list(images))):
        r["oracle"] = p
    return rows


def select(rows: list[dict], contents: list[str], ref_style: str, cfg: FeedbackConfig,
           manual: list[int] | None = None) -> list[int]:
    """Ids of the images to keep."""
    per = cfg.per_prompt
    groups = [rows[k * per:(k + 1) * per] for k in range(len(rows) // per)]
    if cfg.select == "manual":
        if not manual:
            raise ValueError("manual selection needs the ids of the chosen images")
        bad = [i for i in manual if not 0 <= i < len(rows)]
        if bad:
            raise ValueError(f"image ids out of range 0..{len(rows) - 1}: {bad}")
        return sorted(set(manual))
    if cfg.select == "random":
        rng = np.random.default_rng(cfg.seed)
        return [g[int(rng.integers(len(g)))]["id"] for g in groups]
    if cfg.select == "clip":
        if "clip_t" not in rows[0]:
            raise ValueError("this base has no CLIP scorer (clip_scorer/); use --select oracle or random")
        return [max(g, key=lambda r: r["clip_t"] + cfg.clip_i_weight * r["clip_i"])["id"] for g in groups]
    good = [r for g, c in zip(groups, contents) for r in g
            if r["oracle"]["content"] == c and r["oracle"]["style"] == ref_style]
    good.sort(key=lambda r: -(r["oracle"]["content_prob"] * r["oracle"]["style_prob"]))
    return [r["id"] for r in good[: cfg.keep]]


def candidates(base, oracles: Oracles, adapter, meta: dict, references: list[np.ndarray], cfg: FeedbackConfig):
    """Round k's images for varied content prompts (the reference's content left out), scored.
    Returns (content of each prompt, reference's style as the oracle sees it, images, score rows)."""
    ref_view = oracles.classify(references[:1])[0]
    pairs = content_prompts(cfg.prompts, ref_view["content"])
    prompts = [p for _, p in pairs]
    images = generate_candidates(base, adapter, meta.get("style", ""), prompts, cfg)
    rows = score(base, oracles, images, prompts, cfg.per_prompt, references[0])
    return [c for c, _ in pairs], ref_view["style"], images, rows


def retrain(base, adapter_cfg, meta: dict, references, images, rows, kept: list[int], train_cfg: TrainConfig,
            progress=None):
    """A NEW adapter on the references (their own caption) + the kept images (their prompt + descriptor)."""
    if not kept:
        raise UserError("the selection kept no image, so there is nothing new to learn from: generate more "
                        "(--per-prompt, --prompts) or select another way (--select clip or random)")
    descriptor = meta.get("style", "")
    captions = [meta.get("caption") or style_prompt("", descriptor)] * len(references)
    captions += [style_prompt(rows[i]["prompt"], descriptor) for i in kept]
    torch.manual_seed(train_cfg.seed)
    new = train_adapter(base, list(references) + [images[i] for i in kept], captions, adapter_cfg, train_cfg,
                        progress=progress)
    return new, captions


def run_round(base, oracles: Oracles, adapter, meta: dict, references: list[np.ndarray], cfg: FeedbackConfig,
              train_cfg: TrainConfig, manual: list[int] | None = None, progress=None):
    """One feedback round. Returns (new adapter, record with images, scores and choices)."""
    contents, ref_style, images, rows = candidates(base, oracles, adapter, meta, references, cfg)
    kept = select(rows, contents, ref_style, cfg, manual)
    new, captions = retrain(base, adapter.cfg, meta, references, images, rows, kept, train_cfg, progress)
    return new, {"images": images, "scores": rows, "kept": kept, "captions": captions}


def feedback_rounds(base, oracles, adapter, meta, references, cfg: FeedbackConfig, train_cfg: TrainConfig,
                    rounds: int = 1, manual=None, on_round=None):
    """``rounds`` rounds, each starting from the previous round's adapter; ``on_round(k, adapter, record)``."""
    for k in range(rounds):
        adapter, record = run_round(base, oracles, adapter, meta, references,
                                    replace(cfg, seed=cfg.seed + 1000 * k), train_cfg, manual if k == 0 else None)
        if on_round:
            on_round(k + 2, adapter, record)
    return adapter
