"""``styledrop train``, ``sample``, ``evaluate style``: StyleDrop's own commands."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from ..defaults import describe, settle
from ..device import processes, split_draw
from ..train import TrainConfig
from .base_cmds import (
    BASE_HELP,
    COMPILE_HELP,
    DEVICE_HELP,
    DTYPE_HELP,
    LAMBDA_A_HELP,
    LAMBDA_B_HELP,
    SCORER_HELP,
    STEPS_HELP,
    TOKEN_TEMPERATURE_HELP,
    load_base,
    load_eyes,
    sampling,
    write_images,
)
from .common import app, err, evaluate_app, fail, load_oracles, progress_bar, read_prompts

FIT_HELP = "A non-square picture: crop its centre square, or pad it to a square with its edge colour (crop | pad)."


def check_fit(fit: str) -> None:
    from ..io import FITS
    if fit not in FITS:
        fail(f"--fit must be {' or '.join(FITS)}, got {fit!r}")


def read_images(paths: list[Path], size: int, fit: str = "crop") -> list:
    """Images at the base's resolution, with a note for each conversion."""
    from ..io import load_image
    images = []
    for p in paths:
        im, notes = load_image(p, size, fit)
        for note in notes:
            err.print(f"note: {p}: {note}")
        images.append(im)
    return images


@app.command()
def train(
    out: Path = typer.Option(..., help="Adapter file to write (.safetensors)."),
    image: list[Path] = typer.Option(None, help="Style reference image(s); any size or mode (converted)."),
    subject: list[Path] = typer.Option(None, help="Subject images (3-6 of one object) for a content adapter; "
                                       "use with --token and --class."),
    more: list[Path] = typer.Argument(None, help="More images for --image / --subject: `--subject a.png b.png`.",
                                      show_default=False),
    style: Optional[str] = typer.Option(None, help="Style descriptor, e.g. 'in watercolor style'."),
    token: Optional[str] = typer.Option(None, help="A rare token: style '\\[v]' -> 'in \\[v] style'; subject "
                                        "'\\[v]' + --class fish -> 'a \\[v] fish'."),
    class_noun: Optional[str] = typer.Option(None, "--class", help="Subject's class noun, e.g. 'fish'."),
    prior: int = typer.Option(0, help="Subject only: add this many base-model images of 'a CLASS' (DreamBooth's "
                              "prior preservation), captioned without the token."),
    content: str = typer.Option("", help="What the style reference shows, e.g. 'a house'."),
    steps: Optional[int] = typer.Option(None, help="Training steps (default: the base's; 200 on the tiny base)."),
    lr: Optional[float] = typer.Option(None, help="Learning rate (default: the base's; 1e-3 on the tiny base)."),
    batch: Optional[int] = typer.Option(None, help="Batch size (references are repeated and masked differently; "
                                        "default: the base's, 8 on the tiny base)."),
    rank: Optional[int] = typer.Option(None, help="Bottleneck width or LoRA rank (default: the base's; 8, or 4 for "
                                       "a LoRA, on the tiny base): <1% of G."),
    adapter: Optional[str] = typer.Option(None, help="bottleneck (the paper's) | shared | lora | token (textual "
                                          "inversion: learns only what the style's words mean to T; G untouched). "
                                          "Default: the base's (bottleneck on the tiny base, LoRA on aMUSEd)."),
    placement: str = typer.Option("layers", help="Where bottleneck adapters sit: layers (the paper's: after the "
                                  "cross-attention and MLP of every transformer layer) | layers+up (also in G's "
                                  "up block, before the output layer)."),
    seed: int = typer.Option(0, help="Seed of masking and initialisation."),
    base: Optional[Path] = typer.Option(None, help=BASE_HELP),
    device: Optional[str] = typer.Option(None, help=DEVICE_HELP),
    dtype: Optional[str] = typer.Option(None, help=DTYPE_HELP),
    compile: bool = typer.Option(False, "--compile", help=COMPILE_HELP),
    fit: str = typer.Option("crop", help=FIT_HELP),
):
    """Train a style adapter (--image) or a subject adapter (--subject). Resumes from OUT's checkpoint if one exists.

    Example: styledrop train --image ref.png --style "in pop art style" --out runs/pop.safetensors"""
    from contextlib import nullcontext

    from .. import adapters, world
    from ..muse.sampler import SampleConfig, generate
    from ..train import caption_for, train_adapter
    if bool(image) == bool(subject):
        fail("give style references with --image, or subject images with --subject (not both)")
    paths = list(image or subject) + list(more or [])
    if subject:
        if style:
            fail("--style is for style adapters; a subject adapter takes --token and --class")
        if not token or not class_noun:
            fail("a subject adapter needs --token (e.g. '[v]') and --class (e.g. 'fish')")
        if prior < 0:
            fail(f"--prior must be 0 or more, got {prior}")
        caption = f"{world.article(token)} {token} {class_noun}"
        info = {"role": "subject", "token": token, "class": class_noun, "caption": caption}
    else:
        if style and token:
            fail("give --style or --token, not both")
        descriptor = style or (world.style_phrase(token=token) if token else None)
        if not descriptor:
            fail("give a style descriptor (--style 'in watercolor style') or a rare token (--token '[v]')")
        caption = caption_for(content, descriptor)
        info = {"role": "style", "style": descriptor, "content": content, "caption": caption}
    check_fit(fit)
    model = load_base(base, device, dtype, compile)
    chosen, sources = settle(model, {"adapter": adapter, "rank": rank, "lr": lr, "train_steps": steps,
                                     "batch": batch})
    if rank is None and chosen["adapter"] == "lora" and sources["adapter"] == "given" and model.knows_world:
        chosen["rank"], sources["rank"] = 4, "LoRA on the tiny base"
    adapter, rank, lr, steps, batch = (chosen[k] for k in ("adapter", "rank", "lr", "train_steps", "batch"))
    err.print(f"settings: {describe(chosen, sources)}")
    try:
        acfg, tcfg = adapters.AdapterConfig(adapter, rank, placement), TrainConfig(steps, batch, lr, seed)
    except ValueError as e:
        fail(str(e))
    images = read_images(paths, model.image_size, fit)
    captions = [caption] * len(images)
    if subject and prior:
        class_prompt = f"{world.article(class_noun)} {class_noun}"
        err.print(f"prior preservation: {prior} base images of '{class_prompt}'")
        images += list(generate(model, [class_prompt] * prior, SampleConfig(seed=seed + 100_000)))
        captions += [class_prompt] * prior
    ckpt = out.with_name(out.name + ".ckpt")
    procs = processes()  # under `accelerate launch`: one share of each batch per process, the first one writes
    first = procs is None or procs[0] == 0
    if ckpt.is_file() and first:
        err.print(f"resuming from {ckpt}")
    t = time.time()
    with progress_bar() if first else nullcontext() as bar:
        task = bar.add_task("training", total=steps, info="") if first else None
        theta = train_adapter(model, images, captions, acfg, tcfg, ckpt, None if not first else
                              lambda i, n, losses: bar.update(task, completed=i, info=f"loss {losses['loss']:.3f}"),
                              words=info.get("style") or info.get("token"))
    if not first:
        return
    if procs is not None:
        info["processes"] = procs[1]
    info["train"] = {"steps": steps, "lr": lr, "batch": batch, "seed": seed, "images": [str(p) for p in paths],
                     "prior": prior, "rank": rank, "kind": adapter, "sources": sources}
    adapters.save(out, theta, model, info)
    ckpt.unlink(missing_ok=True)
    share = 100 * adapters.param_count(theta) / sum(p.numel() for p in model.transformer.parameters())
    err.print(f"trained in {time.time() - t:.0f}s: {adapters.param_count(theta)} parameters "
              f"({share:.2f}% of G) -> {out}")


@app.command()
def sample(
    out: Path = typer.Option(..., help="Folder for the PNGs, grid.png and metadata.jsonl."),
    adapter: Optional[Path] = typer.Option(None, "--adapter", "--style", help="Style adapter from `styledrop train`."),
    subject: Optional[Path] = typer.Option(None, help="Subject adapter (`styledrop train --subject`), composed with "
                                           "the style adapter."),
    prompt: list[str] = typer.Option(None, help="What to draw, e.g. 'a boat'; repeat for several."),
    prompts: Optional[Path] = typer.Option(None, help="A text file with one prompt per line."),
    n: int = typer.Option(8, help="Images per prompt."),
    seed: int = typer.Option(0, help="Image i uses seed + i."),
    steps: Optional[int] = typer.Option(None, help=STEPS_HELP),
    lambda_a: Optional[float] = typer.Option(None, help=LAMBDA_A_HELP),
    lambda_b: Optional[float] = typer.Option(None, help=LAMBDA_B_HELP),
    token_temperature: Optional[float] = typer.Option(None, help=TOKEN_TEMPERATURE_HELP),
    negative_prompt: str = typer.Option("", help="Negative prompt n (default: the empty prompt)."),
    gamma: float = typer.Option(0.5, help="With --subject: 0 = pure style, 1 = pure subject (paper: 0.5-0.7)."),
    compose: str = typer.Option("two-theta", help="With --subject: two-theta (the paper's) | stack | merge."),
    base: Optional[Path] = typer.Option(None, help=BASE_HELP),
    device: Optional[str] = typer.Option(None, help=DEVICE_HELP),
    dtype: Optional[str] = typer.Option(None, help=DTYPE_HELP),
    compile: bool = typer.Option(False, "--compile", help=COMPILE_HELP),
):
    """Draw prompts in the adapter's style: Ĝθ(t) + λA·(Ĝθ(t) − G(t)) + λB·(G(t) − G(n)); with --subject,
    mix the style and subject adapters' guided logits: (1 − γ)·l_s + γ·l_c.

    Example: styledrop sample --adapter runs/pop.safetensors --prompt "a boat" --n 8 --out runs/pop"""
    from .. import adapters
    from ..compose import MODES, compose_logits_fn, composed, role_warnings
    from ..evaluate import style_prompt
    from ..muse.sampler import generate, guided_logits_fn
    texts = read_prompts(prompt, prompts)
    if n < 1:
        fail(f"--n must be at least 1, got {n}")
    if adapter is None and subject is None:
        fail("give a style adapter (--style / --adapter), a subject adapter (--subject), or both")
    if not 0 <= gamma <= 1:
        fail(f"--gamma must be in [0, 1] (0 = pure style, 1 = pure subject), got {gamma}")
    if compose not in MODES:
        fail(f"unknown --compose {compose!r}; expected one of {', '.join(MODES)}")
    model = load_base(base, device, dtype, compile)
    cfg, (lambda_a, lambda_b), chosen = sampling(model, steps, lambda_a, lambda_b, token_temperature, seed)
    settings = chosen | {"negative_prompt": negative_prompt,
                "base_id": model.model_id(),
                "compiled": compile}  # compiled G may flip a token here and there (float rounding)
    if adapter is not None and subject is not None:
        theta_s, meta_s = adapters.load(adapter, model)
        theta_c, meta_c = adapters.load(subject, model)
        for warning in role_warnings(meta_s, meta_c):
            err.print(f"warning: {warning}")
        descriptor = meta_s.get("style", "")
        full = [style_prompt(p, descriptor) for p in texts for _ in range(n)]
        settings |= {"style": str(adapter), "subject": str(subject), "gamma": gamma, "compose": compose}
        t = time.time()
        with composed(model, theta_s, theta_c, compose) as merged:
            images = split_draw(full, seed, lambda ps, s: generate(
                model, ps, replace(cfg, seed=s), logits_fn_for=lambda qs: compose_logits_fn(
                    model, qs, descriptor, theta_s, theta_c, mode=compose, gamma=gamma, lambda_a=lambda_a,
                    lambda_b=lambda_b, negative=negative_prompt, merged=merged)))
    else:
        theta, meta = adapters.load(adapter or subject, model)
        full = [style_prompt(p, meta.get("style", "")) for p in texts for _ in range(n)]
        settings["adapter"] = str(adapter or subject)
        t = time.time()
        with adapters.attached(theta, model.transformer):
            images = split_draw(full, seed, lambda ps, s: generate(
                model, ps, replace(cfg, seed=s), logits_fn_for=lambda qs: guided_logits_fn(
                    model, qs, lambda_b=lambda_b, negative=negative_prompt, adapter=theta, lambda_a=lambda_a)))
    if images is None:  # another process of a multi-process launch: the first one writes
        return
    rows = [{"file": f"{i:04d}.png", "prompt": p, "seed": seed + i} | settings for i, p in enumerate(full)]
    write_images(out, images, rows)
    err.print(f"wrote {len(images)} images to {out} ({len(images) / (time.time() - t):.1f} images/s)")


@evaluate_app.command("style")
def evaluate_style(
    adapter: Path = typer.Option(..., help="Style adapter to evaluate."),
    reference: Optional[Path] = typer.Option(None, help="Reference image (default: the first one it was trained on)."),
    seeds: int = typer.Option(4, help="Seeds per content."),
    steps: Optional[int] = typer.Option(None, help=STEPS_HELP),
    lambda_a: Optional[float] = typer.Option(None, help=LAMBDA_A_HELP),
    lambda_b: Optional[float] = typer.Option(None, help=LAMBDA_B_HELP),
    token_temperature: Optional[float] = typer.Option(None, help=TOKEN_TEMPERATURE_HELP),
    out: Optional[Path] = typer.Option(None, help="Also write the adapter's and the base's grids here."),
    prompts_file: Optional[Path] = typer.Option(None, "--prompts", help="Content prompts, one per line (default: "
                                                "the world's contents on the toy base, everyday subjects on "
                                                "any other)."),
    scorer: Optional[Path] = typer.Option(None, help=SCORER_HELP),
    second_oracle: Optional[str] = typer.Option(None, help="Also judge the same pictures with these oracles (toy "
                                                "base): space (the space-aware judge) or an oracle file."),
    base: Optional[Path] = typer.Option(None, help=BASE_HELP),
    device: Optional[str] = typer.Option(None, help=DEVICE_HELP),
    dtype: Optional[str] = typer.Option(None, help=DTYPE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON only."),
):
    """Oracle style_acc, content_acc, leakage, CLIP-T and CLIP-I of the adapter vs the base alone.

    Example: styledrop evaluate style --adapter runs/pop.safetensors --json"""
    from .. import adapters, world
    from ..evaluate import evaluate_style as run
    from ..feedback import DEFAULT_PROMPTS
    from ..io import load_image, staged_dir
    from .common import png_bytes
    model = load_base(base, device, dtype)
    theta, meta = adapters.load(adapter, model)
    ref_path = reference or adapters.trained_images(meta, adapter)[0]
    ref, _ = load_image(ref_path, model.image_size)
    oracles, clip = load_eyes(model, scorer)
    if second_oracle and oracles is None:
        fail("--second-oracle judges the toy world's pictures; this base is not the toy world's")
    second = load_oracles(second_oracle) if second_oracle else None
    contents = read_prompts(None, prompts_file) if prompts_file else (None if oracles else list(DEFAULT_PROMPTS))
    cfg, (lambda_a, lambda_b), chosen = sampling(model, steps, lambda_a, lambda_b, token_temperature, 0,
                                                 quiet=as_json)
    report = run(model, oracles, theta, meta, ref, cfg, lambda_a, lambda_b, seeds, contents, scorer=clip,
                 second=second)
    report["settings"] = chosen
    if processes() is not None and processes()[0] != 0:  # a multi-process launch drew its share; the first reports
        return
    images = report.pop("images")
    if out is not None:
        staged_dir(out, {f"{k}_grid.png": png_bytes(world.grid(list(v), cols=seeds * 3)) for k, v in images.items()})
    if as_json:
        print(json.dumps(report))
        return
    if report["reference"]:
        err.print(f"reference: {report['reference']['content']} in {report['reference']['style']} "
                  f"({report['n']} images); toy FID against real renders of that style: real vs real "
                  f"{report['fid_floor']:.1f}, VQ round trip {report['fid_vq']:.1f}")
    for name in ("adapter", "base"):
        second_view = report[name].pop("second", None)
        err.print(f"{name:8s} " + "  ".join(f"{k} {v:.3f}" for k, v in report[name].items()))
        if second_view:
            err.print(f"{'':8s} second oracle: " + "  ".join(f"{k} {v:.3f}" for k, v in second_view.items()))


@evaluate_app.command("compose")
def evaluate_compose(
    style: Path = typer.Option(..., help="Style adapter."),
    subject: Path = typer.Option(..., help="Subject adapter."),
    seeds: int = typer.Option(8, help="Images per compose mode (one seed each)."),
    gamma: float = typer.Option(0.5, help="two-theta mixing: 0 = pure style, 1 = pure subject."),
    steps: Optional[int] = typer.Option(None, help=STEPS_HELP),
    lambda_a: Optional[float] = typer.Option(None, help=LAMBDA_A_HELP),
    lambda_b: Optional[float] = typer.Option(None, help=LAMBDA_B_HELP),
    token_temperature: Optional[float] = typer.Option(None, help=TOKEN_TEMPERATURE_HELP),
    out: Optional[Path] = typer.Option(None, help="Also write one grid per compose mode here."),
    scorer: Optional[Path] = typer.Option(None, help=SCORER_HELP),
    base: Optional[Path] = typer.Option(None, help=BASE_HELP),
    device: Optional[str] = typer.Option(None, help=DEVICE_HELP),
    dtype: Optional[str] = typer.Option(None, help=DTYPE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON only."),
):
    """Oracle style_acc, subject_acc and CLIP-T of two-theta vs stack vs merge composition.

    Example: styledrop evaluate compose --style runs/pop.safetensors --subject runs/subject.safetensors --json"""
    from .. import adapters, world
    from ..compose import MODES, role_warnings
    from ..compose import evaluate_compose as run
    from ..io import load_image, staged_dir
    from .common import png_bytes
    if not 0 <= gamma <= 1:
        fail(f"--gamma must be in [0, 1], got {gamma}")
    if seeds < 1:
        fail(f"--seeds must be at least 1, got {seeds}")
    model = load_base(base, device, dtype)
    theta_s, meta_s = adapters.load(style, model)
    theta_c, meta_c = adapters.load(subject, model)
    for warning in role_warnings(meta_s, meta_c):
        err.print(f"warning: {warning}")
    style_ref = load_image(adapters.trained_images(meta_s, style)[0], model.image_size)[0]
    subject_images = [load_image(p, model.image_size)[0] for p in adapters.trained_images(meta_c, subject)]
    oracles, clip = load_eyes(model, scorer)
    cfg, (lambda_a, lambda_b), chosen = sampling(model, steps, lambda_a, lambda_b, token_temperature, 0,
                                                 quiet=as_json)
    report = run(model, oracles, theta_s, meta_s, theta_c, meta_c, style_ref, cfg, gamma=gamma, lambda_a=lambda_a,
                 lambda_b=lambda_b, seeds=seeds, subject_images=subject_images, scorer=clip)
    report["settings"] = chosen
    images = report.pop("images")
    if out is not None:
        staged_dir(out, {f"{k}_grid.png": png_bytes(world.grid(list(v), cols=8)) for k, v in images.items()})
    if as_json:
        print(json.dumps(report))
        return
    err.print(f"{report['prompt']!r}: target style {report['target_style']}, subject {report['subject_class']}")
    for mode in MODES:
        err.print(f"{mode:9s} " + "  ".join(f"{k} {v:.3f}" for k, v in report[mode].items()))


@app.command()
def export(
    adapter: Path = typer.Option(..., help="Adapter file (.safetensors) to export."),
    out: Path = typer.Option(..., help="New folder for the exported adapter."),
    fmt: str = typer.Option("peft", "--format", help="peft: a folder PeftModel.from_pretrained(UVit2DModel, OUT) "
                            "loads."),
    base: Optional[Path] = typer.Option(None, help=BASE_HELP),
):
    """Export a LoRA adapter for peft (bottleneck adapters cannot be expressed as LoRA; the error says why).

    Example: styledrop export --adapter runs/lora.safetensors --format peft --out runs/lora_peft"""
    from .. import adapters
    from ..export import FORMATS, export_peft
    if fmt not in FORMATS:
        fail(f"unknown --format {fmt!r}; expected one of {', '.join(FORMATS)}")
    model = load_base(base, "cpu", "float32")
    theta, meta = adapters.load(adapter, model)
    export_peft(theta, model.transformer, out)
    err.print(f"wrote {out} (PEFT LoRA, rank {theta.cfg.rank}, {len(theta.paths)} target layers)")
