"""``styledrop train``, ``sample``, ``evaluate style``: StyleDrop's own commands."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from ..muse.sampler import DEFAULT_LAMBDA_A, DEFAULT_LAMBDA_B
from .base_cmds import BASE_HELP, sample_config, write_images
from .common import app, err, evaluate_app, fail, progress_bar


def _prompts(prompt: list[str], prompts_file: Optional[Path]) -> list[str]:
    out = list(prompt or [])
    if prompts_file is not None:
        if not prompts_file.is_file():
            fail(f"prompts file not found: {prompts_file}")
        out += [line.strip() for line in prompts_file.read_text().splitlines() if line.strip()]
    if not out:
        fail("no prompt: give --prompt (repeatable) or --prompts FILE")
    if any(not p.strip() for p in out):
        fail("empty prompt: give some text, e.g. --prompt 'a boat'")
    return out


@app.command()
def train(
    image: list[Path] = typer.Option(..., help="Style reference image(s); any size or mode (converted)."),
    out: Path = typer.Option(..., help="Adapter file to write (.safetensors)."),
    style: Optional[str] = typer.Option(None, help="Style descriptor, e.g. 'in watercolor style'."),
    token: Optional[str] = typer.Option(None, help="A rare token instead of a descriptor: '[v]' -> 'in [v] style'."),
    content: str = typer.Option("", help="What the reference shows, e.g. 'a house'."),
    steps: int = typer.Option(400, help="Training steps."),
    lr: float = typer.Option(2e-3, help="Learning rate."),
    batch: int = typer.Option(8, help="Batch size (references are repeated and masked differently)."),
    rank: Optional[int] = typer.Option(None, help="Bottleneck width (default 8) or LoRA rank (default 4): <1% of G."),
    adapter: str = typer.Option("bottleneck", help="bottleneck (the paper's) | shared | lora."),
    seed: int = typer.Option(0, help="Seed of masking and initialisation."),
    base: Optional[Path] = typer.Option(None, help=BASE_HELP),
):
    """Train a style adapter from one (or a few) reference images. Resumes from OUT's checkpoint if one exists."""
    from .. import adapters
    from ..io import load_image
    from ..muse.base import MuseBase
    from ..train import TrainConfig, caption_for, train_adapter
    if style and token:
        fail("give --style or --token, not both")
    descriptor = style or (f"in {token} style" if token else None)
    if not descriptor:
        fail("give a style descriptor (--style 'in watercolor style') or a rare token (--token '[v]')")
    rank = rank or (4 if adapter == "lora" else 8)
    try:
        acfg, tcfg = adapters.AdapterConfig(adapter, rank), TrainConfig(steps, batch, lr, seed)
    except ValueError as e:
        fail(str(e))
    images = []
    for p in image:
        im, notes = load_image(p)
        for note in notes:
            err.print(f"note: {p}: {note}")
        images.append(im)
    model = MuseBase.load(base)
    caption = caption_for(content, descriptor)
    ckpt = out.with_name(out.name + ".ckpt")
    if ckpt.is_file():
        err.print(f"resuming from {ckpt}")
    t = time.time()
    with progress_bar() as bar:
        task = bar.add_task("training", total=steps, info="")
        theta = train_adapter(model, images, caption, acfg, tcfg, ckpt,
                              lambda i, n, losses: bar.update(task, completed=i, info=f"loss {losses['loss']:.3f}"))
    info = {"role": "style", "style": descriptor, "content": content, "caption": caption,
            "train": {"steps": steps, "lr": lr, "batch": batch, "seed": seed, "images": [str(p) for p in image]}}
    adapters.save(out, theta, model, info)
    ckpt.unlink(missing_ok=True)
    share = 100 * adapters.param_count(theta) / sum(p.numel() for p in model.transformer.parameters())
    err.print(f"trained in {time.time() - t:.0f}s: {adapters.param_count(theta)} parameters "
              f"({share:.2f}% of G) -> {out}")


@app.command()
def sample(
    adapter: Path = typer.Option(..., help="Style adapter from `styledrop train`."),
    out: Path = typer.Option(..., help="Folder for the PNGs, grid.png and metadata.jsonl."),
    prompt: list[str] = typer.Option(None, help="What to draw, e.g. 'a boat'; repeat for several."),
    prompts: Optional[Path] = typer.Option(None, help="A text file with one prompt per line."),
    n: int = typer.Option(8, help="Images per prompt."),
    seed: int = typer.Option(0, help="Image i uses seed + i."),
    steps: int = typer.Option(12, help="MaskGIT decoding steps."),
    lambda_a: float = typer.Option(DEFAULT_LAMBDA_A, help="Adapter guidance λA (paper: 0-2)."),
    lambda_b: float = typer.Option(DEFAULT_LAMBDA_B, help="Text guidance λB (paper: 5 on Muse)."),
    negative_prompt: str = typer.Option("", help="Negative prompt n (default: the empty prompt)."),
    base: Optional[Path] = typer.Option(None, help=BASE_HELP),
):
    """Draw prompts in the adapter's style: Ĝθ(t) + λA·(Ĝθ(t) − G(t)) + λB·(G(t) − G(n))."""
    from .. import adapters
    from ..evaluate import style_prompt
    from ..muse.base import MuseBase
    from ..muse.sampler import generate, guided_logits_fn
    texts = _prompts(prompt, prompts)
    if n < 1:
        fail(f"--n must be at least 1, got {n}")
    cfg = sample_config(steps, lambda_b + 1, seed)
    model = MuseBase.load(base)
    theta, meta = adapters.load(adapter, model)
    full = [style_prompt(p, meta.get("style", "")) for p in texts for _ in range(n)]
    t = time.time()
    with adapters.attached(theta, model.transformer):
        images = generate(model, full, cfg, logits_fn_for=lambda ps: guided_logits_fn(
            model, ps, lambda_b=lambda_b, negative=negative_prompt, adapter=theta, lambda_a=lambda_a))
    settings = {"steps": steps, "lambda_a": lambda_a, "lambda_b": lambda_b, "negative_prompt": negative_prompt,
                "adapter": str(adapter), "base_id": model.model_id()}
    rows = [{"file": f"{i:04d}.png", "prompt": p, "seed": seed + i} | settings for i, p in enumerate(full)]
    write_images(out, images, rows)
    err.print(f"wrote {len(images)} images to {out} ({len(images) / (time.time() - t):.1f} images/s)")


@evaluate_app.command("style")
def evaluate_style(
    adapter: Path = typer.Option(..., help="Style adapter to evaluate."),
    reference: Optional[Path] = typer.Option(None, help="Reference image (default: the first one it was trained on)."),
    seeds: int = typer.Option(4, help="Seeds per content."),
    steps: int = typer.Option(12, help="MaskGIT decoding steps."),
    lambda_a: float = typer.Option(DEFAULT_LAMBDA_A, help="Adapter guidance λA."),
    lambda_b: float = typer.Option(DEFAULT_LAMBDA_B, help="Text guidance λB."),
    out: Optional[Path] = typer.Option(None, help="Also write the adapter's and the base's grids here."),
    base: Optional[Path] = typer.Option(None, help=BASE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON only."),
):
    """Oracle style_acc, content_acc, leakage, CLIP-T and CLIP-I of the adapter vs the base alone."""
    from .. import adapters, world
    from ..evaluate import evaluate_style as run
    from ..io import load_image, staged_dir
    from ..muse.base import MuseBase
    from ..oracle import Oracles
    from .common import png_bytes
    model = MuseBase.load(base)
    theta, meta = adapters.load(adapter, model)
    ref_path = reference or Path(meta["train"]["images"][0])
    ref, _ = load_image(ref_path)
    report = run(model, Oracles.load(), theta, meta, ref, sample_config(steps, lambda_b + 1, 0),
                 lambda_a, lambda_b, seeds)
    images = report.pop("images")
    if out is not None:
        staged_dir(out, {f"{k}_grid.png": png_bytes(world.grid(list(v), cols=seeds * 3)) for k, v in images.items()})
    if as_json:
        print(json.dumps(report))
        return
    err.print(f"reference: {report['reference']['content']} in {report['reference']['style']} ({report['n']} images)")
    for name in ("adapter", "base"):
        r = report[name]
        err.print(f"{name:8s} style {r['style_acc']:.2f}  content {r['content_acc']:.2f}  leakage {r['leakage']:.2f}"
                  f"  clip_t {r.get('clip_t', float('nan')):.3f}  clip_i {r.get('clip_i', float('nan')):.3f}")
