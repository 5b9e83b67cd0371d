"""``styledrop report``: the paper's Table 2 (base, round 1, round 2 three ways) for one style, as HTML."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from ..defaults import describe, settle_all
from .base_cmds import (
    BASE_HELP,
    DEVICE_HELP,
    DTYPE_HELP,
    LAMBDA_A_HELP,
    LAMBDA_B_HELP,
    SCORER_HELP,
    load_base,
    load_eyes,
)
from .common import app, content_prompts, err, fail


@app.command()
def report(
    style: Optional[str] = typer.Option(None, help="World style of the reference, ideally held out: pop_art, lava, "
                                        "camouflage, rainbow (toy base)."),
    image: Optional[Path] = typer.Option(None, help="Instead of --style: your own reference picture (any base), "
                                         "with --descriptor."),
    descriptor: Optional[str] = typer.Option(None, help="With --image: the style's words, e.g. 'in watercolor "
                                             "style'."),
    out: Path = typer.Option(..., help="HTML file to write (self-contained: images embedded)."),
    reference_content: str = typer.Option("house", help="What the one reference image shows (with --image: any "
                                          "words, e.g. 'a bridge')."),
    steps: Optional[int] = typer.Option(None, help="Adapter training steps per round (default: the base's for "
                                        "round 1, up to twice that for round 2, which trains on more pictures)."),
    prompts_file: Optional[Path] = typer.Option(None, "--prompts", help="Content prompts of candidates and "
                                                "evaluation, one per line (default: the world's contents on the "
                                                "toy base, 30 everyday subjects on any other)."),
    prompts: int = typer.Option(12, "--n-prompts", help="Round-1 candidate prompts, cycling through the list."),
    per_prompt: int = typer.Option(8, help="Round-1 candidates per prompt."),
    seeds: int = typer.Option(4, help="Evaluation seeds per content (the intervals are over these)."),
    lambda_a: Optional[float] = typer.Option(None, help=LAMBDA_A_HELP),
    lambda_b: Optional[float] = typer.Option(None, help=LAMBDA_B_HELP),
    token: Optional[str] = typer.Option(None, help="Caption the style 'in TOKEN style' (e.g. '\\[v]') instead of by "
                                        "its descriptor: with a pretraining style, the adapter must still learn it "
                                        "from the picture."),
    ids: Optional[str] = typer.Option(None, help="Round-1 candidate ids a person kept (comma-separated; from a "
                                      "previous report's or feedback's scores): adds a 'round 2 manual' row."),
    as_json: bool = typer.Option(False, "--json", help="Also print the table as JSON on stdout."),
    scorer: Optional[Path] = typer.Option(None, help=SCORER_HELP),
    base: Optional[Path] = typer.Option(None, help=BASE_HELP),
    device: Optional[str] = typer.Option(None, help=DEVICE_HELP),
    dtype: Optional[str] = typer.Option(None, help=DTYPE_HELP),
):
    """Base vs round 1 vs round 2 (CLIP / oracle / random feedback): clip_t, clip_i, style, content, leakage.

    Example: styledrop report --style lava --out runs/lava.html
    (any base: styledrop report --image my_style.png --descriptor 'in watercolor style' --scorer clip-vit-large-patch14
    --base amused-256 --out runs/watercolor.html)"""
    from .. import world
    from ..io import atomic_write, load_image
    from ..report import ReportConfig, build, render_html
    own_prompts = content_prompts(prompts_file, "--n-prompts")
    if (style is None) == (image is None):
        fail("give --style (a world style, on the toy base) or --image (your own reference picture), one of them")
    try:
        manual = tuple(int(x) for x in ids.split(",") if x.strip()) if ids else ()
        cfg = ReportConfig(style=style, reference_content=reference_content, prompts=prompts,
                           per_prompt=per_prompt, seeds=seeds, token=token, descriptor=descriptor, manual=manual)
    except ValueError as e:
        fail(str(e) if "invalid literal" not in str(e) else f"--ids must be comma-separated numbers, got {ids!r}")
    if out.suffix.lower() not in (".html", ".htm"):
        fail(f"--out should be an .html file, got {out}")
    if style is not None and style not in world.HELDOUT_STYLES + world.HELDOUT_VARIANTS and not token:
        err.print(f"note: {style} was seen in pretraining; the paper's question is about unseen styles: held-out "
                  f"variants of known ones ({', '.join(world.HELDOUT_VARIANTS)}) or wholly new looks "
                  f"({', '.join(world.HELDOUT_STYLES)})")
    t = time.time()
    model = load_base(base, device, dtype)
    chosen, sources = settle_all(model, train_steps=steps, lambda_a=lambda_a, lambda_b=lambda_b)
    err.print(f"settings: {describe(chosen, sources)}")
    cfg = replace(cfg, steps=chosen["train_steps"], sample_steps=chosen["sample_steps"], scale_steps=steps is None,
                  **{k: chosen[k] for k in ("lambda_a", "lambda_b", "adapter", "rank", "lr", "batch",
                                            "token_temperature", "temperature")})
    reference = load_image(image, model.image_size)[0] if image is not None else None
    oracles, clip = load_eyes(model, scorer)
    if oracles is None and style is not None:
        fail("--style renders the reference in the toy world, which only its base draws: give your own "
             "picture with --image and --descriptor")
    bad = [i for i in manual if not 0 <= i < prompts * per_prompt]
    if bad:
        fail(f"--ids out of range 0..{prompts * per_prompt - 1} (--n-prompts x --per-prompt candidates): {bad}")
    drawing = out.with_name(f".{out.name}.candidates")  # one folder for every process of a launch
    try:
        result = build(model, oracles, cfg, lambda message: err.print(f"[{time.time() - t:4.0f}s] {message}"),
                       scorer=clip, reference=reference, prompts=own_prompts, drawing=drawing)
    finally:
        shutil.rmtree(drawing, ignore_errors=True)
    page = render_html(result)
    atomic_write(out, lambda tmp: Path(tmp).write_text(page))
    err.print(f"wrote {out} in {time.time() - t:.0f}s")
    if as_json:
        print(json.dumps({"style": style or result["descriptor"], "kept": result["kept"], "table": result["table"],
                          "scorer": result["scorer"]}, indent=2))
