"""``styledrop restyle``: put an existing picture in an adapter's style (MaskGIT editing)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from ..restyle import SELECTS, RestyleConfig
from .adapter_cmds import FIT_HELP, check_fit
from .base_cmds import (
    BASE_HELP,
    DEVICE_HELP,
    DTYPE_HELP,
    LAMBDA_A_HELP,
    LAMBDA_B_HELP,
    STEPS_HELP,
    TOKEN_TEMPERATURE_HELP,
    load_base,
    sampling,
    write_images,
)
from .common import app, err, fail


@app.command()
def restyle(
    image: list[Path] = typer.Option(..., help="Picture(s) to restyle; any size or mode (converted, with a note)."),
    out: Path = typer.Option(..., help="Folder for the PNGs, grid.png (inputs beside outputs), metadata.jsonl."),
    adapter: Optional[Path] = typer.Option(None, "--adapter", "--style", help="Style adapter from `styledrop train`."),
    prompt: Optional[str] = typer.Option(None, "--content", "--prompt",
                                         help="What the picture shows, e.g. 'a cat': the re-drawing keeps it far "
                                              "better when named (default: 'a picture', + the adapter's style)."),
    strength: float = typer.Option(RestyleConfig.strength, help="Fraction of tokens re-drawn: 0 < strength <= 1 "
                                                                "(1 = sample from scratch)."),
    select: str = typer.Option(RestyleConfig.select, help=f"Which tokens are re-drawn: {' | '.join(SELECTS)}."),
    n: int = typer.Option(4, help="Outputs per input picture."),
    seed: int = typer.Option(0, help="Output i uses seed + i, as in `sample`."),
    steps: Optional[int] = typer.Option(None, help=STEPS_HELP + " Restyling runs the schedule's tail."),
    lambda_a: Optional[float] = typer.Option(None, help=LAMBDA_A_HELP),
    lambda_b: Optional[float] = typer.Option(None, help=LAMBDA_B_HELP),
    token_temperature: Optional[float] = typer.Option(None, help=TOKEN_TEMPERATURE_HELP),
    base: Optional[Path] = typer.Option(None, help=BASE_HELP),
    device: Optional[str] = typer.Option(None, help=DEVICE_HELP),
    dtype: Optional[str] = typer.Option(None, help=DTYPE_HELP),
    fit: str = typer.Option("crop", help=FIT_HELP),
):
    """Restyle existing pictures: re-mask a fraction of their tokens and re-draw them with the style adapter.

    Example: styledrop restyle --adapter runs/pop.safetensors --image cat.png --content 'a cat' --out runs/cat_pop"""
    from .. import adapters, world
    from ..evaluate import style_prompt
    from ..restyle import restyle as run
    from .adapter_cmds import read_images
    if adapter is None and not (prompt or "").strip():
        fail("give a style adapter (--adapter) or at least a --content to re-draw the picture with")
    if prompt is not None and not prompt.strip():
        fail("empty --content: say what the picture shows, e.g. --content 'a cat'")
    if n < 1:
        fail(f"--n must be at least 1, got {n}")
    check_fit(fit)
    try:
        rc = RestyleConfig(strength=strength, select=select)
    except ValueError as e:
        fail(str(e))
    model = load_base(base, device, dtype)
    cfg, (lambda_a, lambda_b), chosen = sampling(model, steps, lambda_a, lambda_b, token_temperature, seed)
    pictures = read_images(image, model.image_size, fit)
    theta, descriptor = None, ""
    if adapter is not None:
        theta, meta = adapters.load(adapter, model)
        descriptor = meta.get("style", "")
    text = style_prompt(prompt.strip() if prompt else "a picture", descriptor)
    t = time.time()
    inputs = [p for p in pictures for _ in range(n)]
    images, remasked = run(model, inputs, [text] * len(inputs), cfg, rc, theta, lambda_a, lambda_b)
    rows = [{"file": f"{i:04d}.png", "input": image[i // n].name, "strength": strength, "select": select,
             "prompt": text, "seed": seed + i, "redrawn": int(remasked[i].sum()),
             "adapter": adapter.name if adapter else None, "base_id": model.model_id()} | chosen
            for i in range(len(images))]
    beside = [im for j, p in enumerate(pictures) for im in [p, *images[j * n:(j + 1) * n]]]  # each input, its outputs
    write_images(out, images, rows, grid=world.grid(beside, cols=n + 1))
    err.print(f"restyled {len(pictures)} picture(s) x {n} at strength {strength} into {out} "
              f"({len(images) / (time.time() - t):.1f} images/s)")
