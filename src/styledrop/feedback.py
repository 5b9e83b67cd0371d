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
from pathlib import Path

import numpy as np
import torch

from . import world
from .adapters import attached
from .device import split_draw_to
from .evaluate import content_prompt, style_prompt
from .io import PictureFolder, UserError
from .muse.sampler import DEFAULT_LAMBDA_A, DEFAULT_LAMBDA_B, SampleConfig, generate, guided_logits_fn, max_prompts
from .oracle import Oracles
from .scorer import NO_SCORER, Scorer
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
    steps: int = 12  # sampling steps of the candidates
    token_temperature: float = SampleConfig.token_temperature
    temperature: float = SampleConfig.temperature
    seed: int = 0

    def __post_init__(self):
        if self.select not in METHODS:
            raise ValueError(f"unknown selection {self.select!r}; expected one of {', '.join(METHODS)}")
        if self.prompts < 1 or self.per_prompt < 1 or self.keep < 1:
            raise ValueError("--prompts, --per-prompt and keep must be at least 1")


def content_prompts(n: int, exclude: str | None, prompts: list[str] | None = None) -> list[tuple[str, str]]:
    """``n`` (content, prompt) pairs cycling through the world's contents (the reference's left out), or
    through ``prompts`` (the user's own, or ``DEFAULT_PROMPTS``: their content is the prompt itself)."""
    if prompts:
        return [(prompts[i % len(prompts)], prompts[i % len(prompts)]) for i in range(n)]
    contents = [c for c in world.CONTENTS if c != exclude]
    return [(contents[i % len(contents)], content_prompt(contents[i % len(contents)])) for i in range(n)]


# Everyday subjects for a base that is not the toy world's, in the spirit of the paper's Parti prompts.
DEFAULT_PROMPTS = (
    "a cat sitting on a windowsill", "a red bicycle", "a lighthouse on a cliff", "a bowl of fruit",
    "an old steam train", "a teapot", "a mountain lake at dawn", "a robot", "a cup of coffee", "a sailing boat",
    "a dog running on the beach", "a castle", "a bunch of flowers in a vase", "a city street at night",
    "an owl on a branch", "a hot air balloon", "a pair of boots", "a violin", "a snowy cabin in the woods",
    "a fox", "a bridge over a river", "a pineapple", "an astronaut", "a vintage car", "a butterfly",
    "a stack of books", "a windmill in a field", "a horse", "a piece of cake", "a tree in autumn",
)


def generate_candidates(base, adapter, descriptor: str, prompts: list[str], cfg: FeedbackConfig,
                        folder) -> PictureFolder:
    """Every prompt's ``per_prompt`` candidates, written to ``folder`` as they are drawn and read back one at a
    time (a round at 512 px would not fit in memory at once). Under a multi-process launch each process draws
    a share into the same folder and all of them get every picture (each trains its share of round 2's batches)."""
    full = [style_prompt(p, descriptor) for p in prompts for _ in range(cfg.per_prompt)]
    sample = SampleConfig(steps=cfg.steps, seed=cfg.seed, token_temperature=cfg.token_temperature,
                          temperature=cfg.temperature)
    Path(folder).mkdir(parents=True, exist_ok=True)
    with attached(adapter, base.transformer):
        return split_draw_to(PictureFolder(folder, len(full)), full, cfg.seed, lambda ps, s: generate(
            base, ps, replace(sample, seed=s), logits_fn_for=lambda qs: guided_logits_fn(
                base, qs, lambda_b=cfg.lambda_b, adapter=adapter, lambda_a=cfg.lambda_a)), chunk=max_prompts(base, 16))


def score(scorer: Scorer | None, oracles: Oracles | None, images, prompts: list[str], per_prompt: int,
          reference: np.ndarray) -> list[dict]:
    """Per image: its prompt, CLIP-T (vs the content prompt) and CLIP-I (vs the reference) with a scorer,
    the oracles' view with oracles. ``images`` may be a ``PictureFolder``: both read it a chunk at a time."""
    texts = [p for p in prompts for _ in range(per_prompt)]
    rows = [{"id": i, "prompt": t} for i, t in enumerate(texts)]
    if scorer is not None:
        embeds = scorer.image_embeds(images)  # once, for both scores
        ct = (embeds * scorer.text_embeds(texts)).sum(-1)
        ci = embeds @ scorer.image_embeds([reference])[0]
        for r, a, b in zip(rows, ct.tolist(), ci.tolist()):
            r |= {"clip_t": a, "clip_i": b}
    if oracles is not None:
        for r, p in zip(rows, oracles.classify(images)):
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
            raise ValueError(NO_SCORER)
        return [max(g, key=lambda r: r["clip_t"] + cfg.clip_i_weight * r["clip_i"])["id"] for g in groups]
    if "oracle" not in rows[0]:
        raise ValueError("--select oracle needs the toy world's oracles, which know only its base's pictures: "
                         "select by --select clip, random or manual")
    good = [r for g, c in zip(groups, contents) for r in g
            if r["oracle"]["content"] == c and r["oracle"]["style"] == ref_style]
    good.sort(key=lambda r: -(r["oracle"]["content_prob"] * r["oracle"]["style_prob"]))
    # most confident first, whatever their contents: keeping one of each content first (10 contents against 5)
    # fell from 0.61 to 0.54 content after round 2 on the hard styles (docs/experiments.md)
    return [r["id"] for r in good[: cfg.keep]]


def candidates(base, oracles: Oracles | None, adapter, meta: dict, references: list[np.ndarray], cfg: FeedbackConfig,
               folder, scorer: Scorer | None = None, prompts: list[str] | None = None):
    """Round k's images for varied content prompts (the reference's content left out), written to ``folder``
    and scored. Returns (content of each prompt, reference's style as the oracle sees it (None without oracles),
    the images as a ``PictureFolder``, score rows)."""
    ref_view = oracles.classify(references[:1])[0] if oracles is not None else {"content": None, "style": None}
    pairs = content_prompts(cfg.prompts, ref_view["content"], prompts)
    texts = [p for _, p in pairs]
    images = generate_candidates(base, adapter, meta.get("style", ""), texts, cfg, folder)
    rows = score(scorer or Scorer.of_base(base), oracles, images, texts, cfg.per_prompt, references[0])
    return [c for c, _ in pairs], ref_view["style"], images, rows


def round_steps(steps: int, pictures: int) -> int:
    """Training steps for a round on ``pictures`` pictures, from ``steps``, the base's for one picture: up to twice
    as many from 8 pictures on. A round 2 on the reference + 10 kept pictures at the base's 200 steps was short of
    them: 400 lifted content on the hard styles from 0.53 to 0.61; 800 gained nothing and leaked more
    (docs/experiments.md)."""
    return round(steps * min(2.0, max(1.0, pictures / 4)))


def retrain(base, adapter_cfg, meta: dict, references, images, rows, kept: list[int], train_cfg: TrainConfig,
            progress=None, scale_steps: bool = True):
    """A NEW adapter on the references (their own caption) + the kept images (their prompt + descriptor), for
    ``round_steps`` of ``train_cfg.steps`` (``scale_steps``) or that many. Returns (adapter, captions, steps)."""
    if not kept:
        raise UserError("the selection kept no image, so there is nothing new to learn from: generate more "
                        "(--per-prompt, --prompts) or select another way (--select clip or random)")
    descriptor = meta.get("style", "")
    captions = [meta.get("caption") or style_prompt("", descriptor)] * len(references)
    captions += [style_prompt(rows[i]["prompt"], descriptor) for i in kept]
    pictures = list(references) + [images[i] for i in kept]
    if scale_steps:
        train_cfg = replace(train_cfg, steps=round_steps(train_cfg.steps, len(pictures)))
    torch.manual_seed(train_cfg.seed)
    new = train_adapter(base, pictures, captions, adapter_cfg, train_cfg, progress=progress, words=descriptor)
    return new, captions, train_cfg.steps


def run_round(base, oracles: Oracles | None, adapter, meta: dict, references: list[np.ndarray], cfg: FeedbackConfig,
              train_cfg: TrainConfig, folder, manual: list[int] | None = None, progress=None,
              scorer: Scorer | None = None, prompts: list[str] | None = None, scale_steps: bool = True):
    """One feedback round, its candidates drawn into ``folder``. Returns (new adapter, record with the images,
    scores, choices and training steps)."""
    contents, ref_style, images, rows = candidates(base, oracles, adapter, meta, references, cfg, folder, scorer,
                                                   prompts)
    kept = select(rows, contents, ref_style, cfg, manual)
    new, captions, steps = retrain(base, adapter.cfg, meta, references, images, rows, kept, train_cfg, progress,
                                   scale_steps)
    return new, {"images": images, "scores": rows, "kept": kept, "captions": captions, "steps": steps}


def feedback_rounds(base, oracles, adapter, meta, references, cfg: FeedbackConfig, train_cfg: TrainConfig,
                    folder_for, rounds: int = 1, manual=None, on_round=None, scorer: Scorer | None = None,
                    prompts: list[str] | None = None, scale_steps: bool = True):
    """``rounds`` rounds, each starting from the previous round's adapter, round k's candidates drawn into
    ``folder_for(k)``; ``on_round(k, adapter, record)``. ``scale_steps``: each round trains for ``round_steps``
    of ``train_cfg.steps`` (off: exactly that many, as when the user gives --steps)."""
    for k in range(rounds):
        adapter, record = run_round(base, oracles, adapter, meta, references,
                                    replace(cfg, seed=cfg.seed + 1000 * k), train_cfg, folder_for(k + 2),
                                    manual if k == 0 else None, scorer=scorer, prompts=prompts,
                                    scale_steps=scale_steps)
        if on_round:
            on_round(k + 2, adapter, record)
    return adapter
