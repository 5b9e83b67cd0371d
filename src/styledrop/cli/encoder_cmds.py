"""``styledrop evaluate tokenizer|clip|space``: the checks of the base's eyes and of the style space."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..io import image_files, load_image
from .common import err, evaluate_app, fail

PARTS_HELP = ("A base folder (aMUSEd layout) or a folder of pretraining stages such as pretrained_stages/ "
              "(default: the shipped base).")


def _parts(base: Optional[Path]) -> Path:
    from ..muse.base import DEFAULT_BASE
    path = base or DEFAULT_BASE
    if not path.is_dir():
        fail(f"folder not found: {path}")
    return path


def _print(report: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report))
        return
    for split, r in report.items():
        err.print(f"{split:16s} " + "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                             for k, v in r.items()))


@evaluate_app.command("tokenizer")
def evaluate_tokenizer(
    base: Optional[Path] = typer.Option(None, help=PARTS_HELP),
    images: Optional[Path] = typer.Option(None, help="Also the PSNR on your own pictures: a folder or an image file."),
    n: int = typer.Option(96, help="Fresh renders per split."),
    seed: int = typer.Option(7, help="Seed of the renders."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON only."),
):
    """VQ reconstruction per split: PSNR, codes used, oracle content/style on the reconstructions.

    Example: styledrop evaluate tokenizer --base pretrained_stages --images my_pictures/ --json"""
    from ..eval_encoders import evaluate_tokenizer as run
    from ..eval_encoders import load_vq_part
    from ..oracle import Oracles
    if n < 1:
        fail(f"--n must be at least 1, got {n}")
    own = [load_image(f)[0] for f in image_files([images])] if images is not None else None
    _print(run(load_vq_part(_parts(base)), Oracles.load(), n, seed, own), as_json)


@evaluate_app.command("clip")
def evaluate_clip(
    base: Optional[Path] = typer.Option(None, help=PARTS_HELP),
    n: int = typer.Option(200, help="Fresh renders per split."),
    seed: int = typer.Option(8, help="Seed of the renders."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON only."),
):
    """CLIP zero-shot per split: content retrieval, style retrieval, and whether the picture's own caption
    outranks the same caption with another content (what feedback relies on).

    Example: styledrop evaluate clip --base pretrained_stages --json"""
    from ..eval_encoders import evaluate_clip as run
    from ..eval_encoders import load_clip_part
    if n < 1:
        fail(f"--n must be at least 1, got {n}")
    _print(run(load_clip_part(_parts(base)), n, seed), as_json)


@evaluate_app.command("space")
def evaluate_space(
    n: int = typer.Option(2000, help="Style-space renders to classify."),
    seed: int = typer.Option(11, help="Seed of the renders."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON only."),
):
    """How often the style oracle calls a style-space render a held-out style (must stay at most 5%, so that
    the held-out styles stay unseen).

    Example: styledrop evaluate space --json"""
    from ..evaluate import space_heldout_fraction
    from ..oracle import Oracles
    if n < 1:
        fail(f"--n must be at least 1, got {n}")
    report = space_heldout_fraction(Oracles.load(), n, seed)
    if as_json:
        print(json.dumps(report))
        return
    err.print(f"{report['heldout_fraction']:.3f} of {n} style-space renders are called a held-out style "
              f"({', '.join(f'{s} {f:.3f}' for s, f in report['by_style'].items())}); limit 0.05")



