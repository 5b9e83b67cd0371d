"""``styledrop report``: the paper's Table 2 (base, round 1, round 2 three ways) for one style, as HTML."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from ..muse.sampler import DEFAULT_LAMBDA_A, DEFAULT_LAMBDA_B
from ..train import TrainConfig
from .base_cmds import BASE_HELP, DEVICE_HELP, DTYPE_HELP, load_base
from .common import app, err, fail


@app.command()
def report(
    style: str = typer.Option(..., help="World style of the reference, ideally held out: pop_art, lava, camouflage, "
                              "rainbow."),
    out: Path = typer.Option(..., help="HTML file to write (self-contained: images embedded)."),
    reference_content: str = typer.Option("house", help="What the one reference image shows."),
    steps: int = typer.Option(TrainConfig.steps, help="Adapter training steps per round."),
    prompts: int = typer.Option(12, help="Round-1 candidate prompts."),
    per_prompt: int = typer.Option(8, help="Round-1 candidates per prompt."),
    seeds: int = typer.Option(4, help="Evaluation seeds per content (the intervals are over these)."),
    lambda_a: float = typer.Option(DEFAULT_LAMBDA_A, help="Adapter guidance λA."),
    lambda_b: float = typer.Option(DEFAULT_LAMBDA_B, help="Text guidance λB."),
    token: Optional[str] = typer.Option(None, help="Caption the style 'in TOKEN style' (e.g. '\\[v]') instead of by "
                                        "its descriptor: with a pretraining style, the adapter must still learn it "
                                        "from the picture."),
    as_json: bool = typer.Option(False, "--json", help="Also print the table as JSON on stdout."),
    base: Optional[Path] = typer.Option(None, help=BASE_HELP),
    device: Optional[str] = typer.Option(None, help=DEVICE_HELP),
    dtype: Optional[str] = typer.Option(None, help=DTYPE_HELP),
):
    """Base vs round 1 vs round 2 (CLIP / oracle / random feedback): clip_t, clip_i, style, content, leakage.

    Example: styledrop report --style lava --out runs/lava.html"""
    from .. import world
    from ..io import atomic_write
    from ..oracle import Oracles
    from ..report import ReportConfig, build, render_html
    try:
        cfg = ReportConfig(style=style, reference_content=reference_content, steps=steps, prompts=prompts,
                           per_prompt=per_prompt, seeds=seeds, lambda_a=lambda_a, lambda_b=lambda_b,
                           token=token)
    except ValueError as e:
        fail(str(e))
    if out.suffix.lower() not in (".html", ".htm"):
        fail(f"--out should be an .html file, got {out}")
    if style not in world.HELDOUT_STYLES and not token:
        err.print(f"note: {style} was seen in pretraining; the paper's question is about unseen styles "
                  f"({', '.join(world.HELDOUT_STYLES)})")
    t = time.time()
    model, oracles = load_base(base, device, dtype), Oracles.load()
    result = build(model, oracles, cfg, lambda message: err.print(f"[{time.time() - t:4.0f}s] {message}"))
    page = render_html(result)
    atomic_write(out, lambda tmp: Path(tmp).write_text(page))
    err.print(f"wrote {out} in {time.time() - t:.0f}s")
    if as_json:
        print(json.dumps({"style": style, "kept": result["kept"], "table": result["table"]}, indent=2))
