"""``styledrop report``: the paper's Table 2 for one style, as a self-contained HTML page.

Rows: the base alone, round 1 (one reference image), and round 2 trained on the reference plus
round-1 images kept by CLIP, by the oracle (our stand-in for a person), at random, and by a person (the
image ids given). On a base that is not the toy world's there is no oracle: its row and its columns go, and
the reference is the user's picture with the user's descriptor. All rows
share one set of round-1 candidates and are evaluated on the same prompts and seeds, so their
differences are paired. Columns: clip_t (text score), clip_i (style score: CLIP similarity to
the reference), and the oracle's style_acc, content_acc and leakage, each with a 95% interval
over sampling seeds.
"""

from __future__ import annotations

import base64
import html
import io
import math
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from . import adapters, world
from .evaluate import style_eval_prompts, style_metrics, style_samples
from .feedback import FeedbackConfig, candidates, retrain, select
from .muse.sampler import DEFAULT_LAMBDA_A, DEFAULT_LAMBDA_B, SampleConfig
from .train import TrainConfig, caption_for, train_adapter

METRICS = ("clip_t", "clip_i", "style_acc", "content_acc", "leakage")
FRACTIONS = ("style_acc", "content_acc", "leakage")  # oracle hit rates; the CLIP scores are cosines
SELECTIONS = {"round 2 CLIP": "clip", "round 2 oracle": "oracle", "round 2 random": "random",
              "round 2 manual": "manual"}
PAPER = {"base": (0.323, 0.556), "round 1": (0.313, 0.705), "round 2 oracle": (0.322, 0.694),
         "round 2 CLIP": (0.329, 0.673), "round 2 random": (0.316, 0.678)}  # Table 2 (Text / Style)
_T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}


@dataclass(frozen=True)
class ReportConfig:
    style: str | None  # a world style to render the reference in; None: the user's own reference picture
    reference_content: str = "house"
    steps: int = TrainConfig.steps  # adapter training steps: round 1's; round 2's grow with its pictures
    scale_steps: bool = True  # off: round 2 trains for exactly ``steps`` too (the user gave --steps)
    prompts: int = 12  # round-1 candidates: prompts x per_prompt images
    per_prompt: int = 8
    keep: int = 10
    seeds: int = 4  # evaluation: every pretraining content x this many seeds
    lambda_a: float = DEFAULT_LAMBDA_A
    lambda_b: float = DEFAULT_LAMBDA_B
    sample_steps: int = 12
    # the rest of the base's defaults (``defaults.py``; the CLI fills them from the base): the tiny base's here
    adapter: str = "bottleneck"
    rank: int = 8
    lr: float = TrainConfig.lr
    batch: int = TrainConfig.batch
    token_temperature: float = SampleConfig.token_temperature
    temperature: float = SampleConfig.temperature
    token: str | None = None  # caption the style "in TOKEN style" (e.g. "[v]") instead of by its descriptor
    descriptor: str | None = None  # with the user's own reference: its style descriptor, e.g. "in watercolor style"
    manual: tuple[int, ...] = ()  # round-1 candidate ids a person kept: adds the "round 2 manual" row

    def __post_init__(self):
        if self.style is None:
            if not (self.descriptor or "").strip() and not self.token:
                raise ValueError("with your own reference picture, say what its style is called: --descriptor "
                                 "'in watercolor style' (or --token '[v]')")
        elif self.style not in world.STYLES:
            raise ValueError(f"unknown style {self.style!r}; one of: {', '.join(world.STYLE_NAMES)}")
        elif self.reference_content not in world.CONTENTS:
            raise ValueError(f"unknown content {self.reference_content!r}; one of: {', '.join(world.CONTENTS)}")
        if self.seeds < 2:
            raise ValueError("an interval over seeds needs --seeds 2 or more")
        if self.token is not None and not self.token.strip():
            raise ValueError("--token must not be empty (e.g. '[v]')")

    def phrase(self) -> str:
        """What the reference is captioned with: a world style's descriptor (a held-out variant's parent's, as the
        paper's styles are captioned "in watercolor style"), the user's descriptor, or "in TOKEN style"."""
        if self.style is not None:
            return world.reference_phrase(self.style, self.token)
        return self.descriptor.strip() if self.descriptor else world.style_phrase(token=self.token)


def interval(per_seed: np.ndarray, bounds: tuple[float, float] = (-math.inf, math.inf)) -> tuple[float, float, float]:
    """Mean and 95% t-interval of per-seed values, cut to ``bounds`` (a fraction cannot leave [0, 1])."""
    n = len(per_seed)
    mean = float(per_seed.mean())
    half = _T95.get(n - 1, 1.96) * float(per_seed.std(ddof=1)) / math.sqrt(n)
    return mean, max(bounds[0], mean - half), min(bounds[1], mean + half)


def build(base, oracles, cfg: ReportConfig, progress=None, scorer=None, reference=None,
          prompts: list[str] | None = None, drawing: Path | None = None) -> dict:
    """Train round 1, round 2 each way, evaluate every row. ``progress(message)`` narrates.

    ``oracles`` None (a base that is not the toy world's): ``reference`` is the user's picture, ``prompts``
    the content prompts of candidates and evaluation, and only the CLIP columns are filled."""
    from .evaluate import content_prompt
    from .feedback import DEFAULT_PROMPTS
    from .scorer import Scorer
    say = progress or (lambda message: None)
    scorer = scorer or Scorer.of_base(base)
    if cfg.style is not None:
        reference = world.sample(0, 0, [(cfg.reference_content, cfg.style)]).image
    descriptor = cfg.phrase()
    if oracles is None and prompts is None:
        prompts = list(DEFAULT_PROMPTS)
    meta = {"style": descriptor, "caption": caption_for(content_prompt(cfg.reference_content), descriptor)}
    train_cfg = TrainConfig(steps=cfg.steps, lr=cfg.lr, batch=cfg.batch)
    adapter_cfg = adapters.AdapterConfig(cfg.adapter, cfg.rank)
    sample = SampleConfig(steps=cfg.sample_steps, token_temperature=cfg.token_temperature,
                          temperature=cfg.temperature)
    say("round 1: training on the reference")
    models = {"base": None, "round 1": train_adapter(base, [reference], meta["caption"], adapter_cfg, train_cfg)}

    fb = FeedbackConfig(prompts=cfg.prompts, per_prompt=cfg.per_prompt, keep=cfg.keep,
                        lambda_a=cfg.lambda_a, lambda_b=cfg.lambda_b, steps=cfg.sample_steps,
                        token_temperature=cfg.token_temperature, temperature=cfg.temperature)
    say(f"round 1: generating {cfg.prompts * cfg.per_prompt} candidates")
    # the candidates go to disk and are read back one at a time; ``drawing``: a folder every process of a launch
    # shares (the CLI's, beside the report), else a temporary one; either is removed once round 2 is trained
    with tempfile.TemporaryDirectory(prefix="styledrop-candidates-") as own:
        folder = Path(drawing or own)
        contents, ref_style, images, rows = candidates(base, oracles, models["round 1"], meta, [reference], fb,
                                                       folder, scorer, prompts)
        kept = {}
        for name, method in SELECTIONS.items():
            if (method == "oracle" and oracles is None) or (method == "clip" and scorer is None) or (
                    method == "manual" and not cfg.manual):
                continue
            kept[name] = select(rows, contents, ref_style, replace(fb, select=method), list(cfg.manual))
            if kept[name]:
                say(f"{name}: training on the reference + {len(kept[name])} kept images")
                models[name] = retrain(base, adapter_cfg, meta, [reference], images, rows, kept[name], train_cfg,
                                       scale_steps=cfg.scale_steps)[0]
            else:
                say(f"{name}: the selection kept no image; row left out")

    ref, pairs = style_eval_prompts(oracles, reference, cfg.seeds, prompts)
    seed_of = np.array([k for _, k in pairs])
    table, grids = {}, {}
    for name, theta in models.items():
        say(f"evaluating {name} on {len(pairs)} prompts")
        ims = style_samples(base, theta, descriptor, pairs, replace(sample, seed=10_000),
                            cfg.lambda_a, cfg.lambda_b)
        scores = style_metrics(scorer, oracles, ims, pairs, ref, reference)
        table[name] = {m: interval(np.array([v[seed_of == k].mean() for k in range(cfg.seeds)]),
                                   (0.0, 1.0) if m in FRACTIONS else (-1.0, 1.0))
                       for m, v in scores.items()}
        grids[name] = world.grid([ims[i] for i in range(len(pairs)) if seed_of[i] == 0], cols=12)
    return {"config": asdict(cfg), "descriptor": descriptor, "reference_view": ref, "table": table,
            "kept": {k: len(v) for k, v in kept.items()}, "candidates": len(rows), "reference": reference,
            "grids": grids, "scorer": scorer.name if scorer else None, "oracles": oracles is not None,
            "contents": len({c for c, _ in pairs})}


def data_uri(image) -> str:
    buf = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


COLORS = ("#888888", "#4c72b0", "#dd8452", "#55a868", "#c44e52")


def _plot(table: dict) -> str:
    """One small bar panel per metric, a bar per row with its 95% interval, as inline SVG."""
    names = list(table)
    pw, ph, top, left = 170, 160, 24, 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{pw * len(METRICS) + 20}" height="{ph + 70}" '
             'font-family="sans-serif" font-size="11" id="plot">']
    for j, metric in enumerate(m for m in METRICS if m in table[names[0]]):
        x0 = left + j * pw
        parts.append(f'<text x="{x0 + pw / 2 - 10}" y="14" text-anchor="middle">{metric}</text>')
        parts.append(f'<line x1="{x0}" y1="{top + ph}" x2="{x0 + pw - 20}" y2="{top + ph}" stroke="#333"/>')
        bw = (pw - 30) / len(names)
        for i, name in enumerate(names):
            mean, lo, hi = table[name][metric]
            y = lambda v: top + ph - max(0.0, min(1.0, v)) * ph  # noqa: E731  (scores live in [0, 1])
            bx = x0 + 5 + i * bw
            parts.append(f'<rect x="{bx:.1f}" y="{y(mean):.1f}" width="{bw - 3:.1f}" height="{top + ph - y(mean):.1f}" '
                         f'fill="{COLORS[i % len(COLORS)]}"><title>{html.escape(name)}: {mean:.3f}</title></rect>')
            cx = bx + (bw - 3) / 2
            parts.append(f'<line x1="{cx:.1f}" y1="{y(lo):.1f}" x2="{cx:.1f}" y2="{y(hi):.1f}" stroke="#000"/>')
    for i, name in enumerate(names):
        parts.append(f'<rect x="{left + i * 150}" y="{ph + 45}" width="10" height="10" '
                     f'fill="{COLORS[i % len(COLORS)]}"/><text x="{left + i * 150 + 14}" y="{ph + 54}">'
                     f'{html.escape(name)}</text>')
    return "".join(parts) + "</svg>"


def render_html(report: dict) -> str:
    cfg, table = report["config"], report["table"]
    metrics = [m for m in METRICS if m in next(iter(table.values()))]
    head = "".join(f"<th>{m}</th>" for m in metrics)
    body = []
    for name, row in table.items():
        cells = "".join(f"<td>{row[m][0]:.3f}<br><small>[{row[m][1]:.3f}, {row[m][2]:.3f}]</small></td>"
                        for m in metrics)
        paper = PAPER.get(name)
        paper_cell = f"{paper[0]:.3f} / {paper[1]:.3f}" if paper else ""
        body.append(f"<tr><th>{html.escape(name)}</th>{cells}<td>{paper_cell}</td></tr>")
    grids = "".join(f'<figure><figcaption>{html.escape(name)}</figcaption><img class="grid" src="{data_uri(g)}" '
                    f'alt="{html.escape(name)}"></figure>' for name, g in report["grids"].items())
    kept = ", ".join(f"{k}: {v}" for k, v in report["kept"].items())
    title = cfg["style"] or report["descriptor"]
    evaluated = ("every pretraining content but the reference's" if report["oracles"]
                 else f"{report['contents']} content prompts")
    scorer = report.get("scorer")
    measures = (f"clip_t = text score, clip_i = style score (CLIP similarity to the reference), by "
                f"{html.escape(scorer)}" if scorer else "no CLIP scorer, so no clip_t / clip_i")
    measures += ("; style_acc, content_acc, leakage by the toy world's oracles." if report["oracles"]
                 else "; no oracle metrics: this base is not the toy world's.")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>styledrop report: {html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1000px; margin: 1.5em auto; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: center; }}
img.grid {{ width: 100%; image-rendering: pixelated; }} img.ref {{ width: 128px; image-rendering: pixelated; }}
small {{ color: #666; }}
</style></head><body>
<h1>StyleDrop feedback rounds: {html.escape(title)}</h1>
<p>Reference (one image, "{html.escape(cfg['reference_content'])}" {html.escape(report['descriptor'])}):<br>
<img class="ref" src="{data_uri(report['reference'])}" alt="reference"></p>
<p>Round 1 trained {cfg['steps']} steps on the reference; round 2 trained a new adapter on the reference plus
round-1 images kept from {report['candidates']} candidates ({cfg['prompts']} prompts × {cfg['per_prompt']}) —
kept: {html.escape(kept)}. Evaluation: {html.escape(evaluated)}, {cfg['seeds']} seeds,
λA {cfg['lambda_a']}, λB {cfg['lambda_b']}, {cfg['sample_steps']} decoding steps.
Cells: mean and 95% interval over seeds. <span id="measures">{measures}</span></p>
<table id="table2"><tr><th></th>{head}<th>paper (Text / Style)</th></tr>
{''.join(body)}
</table>
<h2>Plot</h2>
{_plot(table)}
<h2>Examples (seed 0, one image per content)</h2>
{grids}
</body></html>
"""
