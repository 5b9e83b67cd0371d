"""``styledrop pretrain``, ``generate``, ``evaluate base``: the base model's commands."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Optional

import typer

from ..io import staged_dir
from ..muse.sampler import SampleConfig
from .common import app, err, evaluate_app, fail, jsonl, load_oracles, png_bytes, progress_bar, read_prompts

BASE_HELP = "Base model folder in aMUSEd layout (default: the shipped tiny base)."
TOKEN_TEMPERATURE_HELP = "Temperature of each token's draw: below 1 sharpens (0.7 draws the clearest objects)."
DEVICE_HELP = "cpu | cuda | mps (default: CUDA if present, else MPS, else CPU)."
DTYPE_HELP = "float32 | bfloat16 | float16 (default: bfloat16/float16 on a GPU, float32 on the CPU)."
COMPILE_HELP = ("Run G through torch.compile: ~1.2x faster per step after a one-off compile (30-90 s on CPU, "
                "cached on disk): worth it for long runs or many images.")


def load_base(path, device: str | None = None, dtype: str | None = None, compile: bool = False):
    """The base model on the asked (or detected) device and dtype, G compiled if asked; errors name the
    problem. Under a multi-process launch, each process takes its own GPU."""
    from ..device import processes, resolve
    from ..muse.base import MuseBase
    dev, dt = resolve(device, dtype)
    if dev.type == "cuda" and processes() is not None:
        from accelerate import PartialState
        dev = PartialState().device
    if compile:
        check_can_compile(dev)
    model = MuseBase.load(path, device=dev, dtype=dt)
    return model.compile() if compile else model


SCORER_HELP = ("A local transformers CLIPModel folder (e.g. clip-vit-large-patch14, with its tokenizer and "
               "preprocessor_config.json) for CLIP-T / CLIP-I (default: the base's clip_scorer/).")


def load_eyes(model, scorer: Path | None, oracles: str = "shipped"):
    """(oracles, CLIP scorer) for measuring ``model``'s pictures: the ``oracles`` (shipped, space or a file) only on
    the toy world's base, the scorer from ``--scorer`` or the base's own (None if neither). Says once what is
    skipped."""
    from ..scorer import resolve
    clip = resolve(model, scorer)
    if model.knows_world:
        return load_oracles(oracles), clip
    scored = f"CLIP-T and CLIP-I by {clip.name}" if clip else "no CLIP scores either (no --scorer given)"
    err.print(f"note: {model.path or 'this base'} is not the toy world's base, so the oracle metrics (style, content, "
              f"leakage) are skipped; {scored}")
    return None, clip


def check_can_compile(device) -> None:
    if device.type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        fail("--compile needs a C++ compiler on the CPU (torch.compile builds its kernels with it): "
             "install g++, or run without --compile")


def sample_config(steps: int, guidance: float, seed: int, token_temperature: float, temperature: float = 1.0):
    try:
        return SampleConfig(steps=steps, guidance=guidance, seed=seed, token_temperature=token_temperature,
                            temperature=temperature)
    except ValueError as e:
        fail(str(e))


STEPS_HELP = "MaskGIT decoding steps (default: the base's; 12 on the tiny base, 36 on aMUSEd)."
LAMBDA_A_HELP = "Adapter guidance λA (default: the base's; 0.5 on the tiny base, 2 on aMUSEd as in the paper)."
LAMBDA_B_HELP = "Text guidance λB (default: the base's; 1 on the tiny base, 5 on aMUSEd as in the paper)."


def sampling(model, steps, lambda_a, lambda_b, token_temperature, seed: int, quiet: bool = False):
    """The sampler's settings: those given, the rest from the base's defaults (``defaults.py``); says which came
    from where. Returns (SampleConfig, (λA, λB), {setting: value} for the output's metadata)."""
    from ..defaults import describe, settle
    chosen, sources = settle(model, {"sample_steps": steps, "lambda_a": lambda_a, "lambda_b": lambda_b,
                                     "token_temperature": token_temperature, "temperature": None})
    if not quiet:
        err.print(f"settings: {describe(chosen, sources)}")
    cfg = sample_config(chosen["sample_steps"], chosen["lambda_b"] + 1, seed, chosen["token_temperature"],
                        chosen["temperature"])
    meta = {"steps": chosen["sample_steps"], "lambda_a": chosen["lambda_a"], "lambda_b": chosen["lambda_b"],
            "token_temperature": chosen["token_temperature"], "temperature": chosen["temperature"],
            "sources": sources}
    return cfg, (chosen["lambda_a"], chosen["lambda_b"]), meta


def write_images(out: Path, images, rows: list[dict], grid=None) -> None:
    """One PNG per image, grid.png (``grid``, or all the images tiled) and metadata.jsonl, all or nothing."""
    from .. import world
    files = {r["file"]: png_bytes(im) for r, im in zip(rows, images)}
    files["grid.png"] = png_bytes(grid if grid is not None else world.grid(list(images)))
    files["metadata.jsonl"] = jsonl(rows)
    staged_dir(out, files)


@app.command()
def pretrain(
    out: Path = typer.Option(None, help="Where to write the base folder (default: the shipped one)."),
    work: Path = typer.Option(Path("runs/pretrain"), help="Checkpoints and finished stages; re-run resumes."),
    vq_steps: int = typer.Option(None, min=1, help="VQ training steps (default from the recipe). More than a "
                                 "finished VQ in --work had: its run goes on from its checkpoint."),
    clip_steps: int = typer.Option(None, min=1, help="CLIP training steps; more goes on as for --vq-steps."),
    g_steps: int = typer.Option(None, min=1, help="Transformer training steps; more goes on as for --vq-steps."),
    vq_merge: int = typer.Option(None, min=0, help="Merge the VQ's codebook into this many codes after training "
                                                   "(k-means weighted by use; 0 = keep every code)."),
    g_varied: float = typer.Option(None, min=0.0, max=1.0,
                                   help="Fraction of G's images in a random rendering, captioned by content only "
                                        "(default 0, the shipped base)."),
    g_space: float = typer.Option(None, min=0.0, max=1.0,
                                  help="Fraction of G's images from the style space, captioned by their look "
                                       "(default: the recipe's; v1 0, v2 0.5)."),
    g_hidden: int = typer.Option(None, min=4, help="G's width (default: the recipe's, 128); a multiple of its "
                                 "attention heads (4). A wider G is for a GPU (--device cuda)."),
    g_layers: int = typer.Option(None, min=1, help="G's transformer layers (default: the recipe's, 4)."),
    recipe: str = typer.Option("v1", help="v1: the shipped base; v2: VQ and CLIP that have seen the style space "
                                          "(pretrained_stages/ holds its finished stages); v3: v2's encoders, the VQ "
                                          "merged into 256 codes (pretrained_stages/vqvae_256), G 16500 steps."),
    stage: str = typer.Option("all", help="all | vq | clip: vq and clip are independent and may run at once."),
    threads: int = typer.Option(None, help="Torch threads (default: all cores)."),
    reuse: Optional[Path] = typer.Option(None, help="Folder of finished stages (vqvae/, tokenizer/, clip/) to start "
                                         "from, e.g. pretrained_stages/ in this repository."),
    device: Optional[str] = typer.Option(None, help="Where the transformer stage runs: cpu | cuda (default: CUDA if "
                                         "present); VQ and CLIP run on the CPU. The base is saved for the CPU."),
    compile: bool = typer.Option(False, "--compile", help="Train G through torch.compile: about 15% faster per step "
                                 "on the CPU, after a minute of compiling (needs a C++ compiler)."),
):
    """Train the tiny base from scratch: VQ tokenizer, then tokenizer + CLIP, then transformer G.

    Example: nohup styledrop pretrain --recipe v2 --stage vq --work runs/pretrain_v2 > runs/vq.log 2>&1 &"""
    from dataclasses import replace

    from ..muse.base import DEFAULT_BASE
    from ..muse.pretrain import PretrainConfig
    from ..muse.pretrain import pretrain as run
    if stage not in ("all", "vq", "clip"):
        fail(f"--stage must be one of all, vq, clip; got {stage!r}")
    if threads:
        import torch
        torch.set_num_threads(threads)
    from ..device import resolve
    dev, _ = resolve(device, "float32")  # G trains in fp32 everywhere: its weights ship for the CPU
    try:
        cfg = PretrainConfig.preset(recipe)
    except ValueError as e:
        fail(str(e))
    if vq_steps:
        cfg = replace(cfg, vq=replace(cfg.vq, steps=vq_steps))
    if clip_steps:
        cfg = replace(cfg, clip=replace(cfg.clip, steps=clip_steps))
    if g_steps:
        cfg = replace(cfg, transformer=replace(cfg.transformer, steps=g_steps))
    if vq_merge is not None:
        try:
            cfg = replace(cfg, vq=replace(cfg.vq, merge=vq_merge))
        except ValueError as e:
            fail(f"--vq-merge: {e}")
    if g_hidden is not None:
        try:
            cfg = replace(cfg, transformer=replace(cfg.transformer, hidden=g_hidden))
        except ValueError as e:
            fail(f"--g-hidden {e}")
    if g_layers is not None:
        cfg = replace(cfg, transformer=replace(cfg.transformer, layers=g_layers))
    if g_varied:
        cfg = replace(cfg, transformer=replace(cfg.transformer, varied=g_varied))
    if g_space is not None:
        cfg = replace(cfg, transformer=replace(cfg.transformer, space=g_space))
    if reuse is not None:
        from ..muse.pretrain import UNMERGED, other_recipes, seed_work
        if not reuse.is_dir():
            fail(f"--reuse folder not found: {reuse}")
        recipes = {"vqvae": cfg.vq.recipe(), "clip": cfg.clip.recipe()}
        if cfg.vq.merge:
            recipes[UNMERGED] = cfg.vq.unmerged().recipe()
        copied = seed_work(work, reuse, recipes)
        for part in other_recipes(reuse, recipes):
            if part == "vqvae" and (work / UNMERGED).is_dir():  # copied now or by an earlier run
                err.print(f"{reuse / part} is merged into {cfg.vq.merge} codes")
            else:
                err.print(f"not reusing {reuse / part}: it was made with another recipe than {recipe}'s; it is trained")
        err.print(f"reusing finished stages from {reuse}: {', '.join(copied) or 'none needed'}")
    t = time.time()
    with progress_bar() as bar:
        tasks = {}

        def tick(stage, i, n, losses):
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=n, info="")
            bar.update(tasks[stage], completed=i, info=" ".join(f"{k} {v:.3f}" for k, v in losses.items()))
        run(cfg, out or DEFAULT_BASE, work, tick, None if stage == "all" else stage, dev, compile)
    made = (out or DEFAULT_BASE) if stage == "all" else work / {"vq": "vqvae", "clip": "clip"}[stage]
    err.print(f"pretrained in {(time.time() - t) / 60:.1f} min -> {made}")


@app.command()
def generate(
    prompt: list[str] = typer.Option(None, help="Text prompt; repeat for several."),
    prompts_file: Optional[Path] = typer.Option(None, "--prompts", help="A text file with one prompt per line."),
    out: Path = typer.Option(..., help="Folder for the PNGs, grid.png and metadata.jsonl."),
    n: int = typer.Option(8, help="Images per prompt."),
    seed: int = typer.Option(0, help="Image i uses seed + i: same seed, same images."),
    steps: int = typer.Option(12, help="MaskGIT decoding steps."),
    guidance: float = typer.Option(SampleConfig.guidance, help="Classifier-free guidance scale."),
    token_temperature: float = typer.Option(SampleConfig.token_temperature, help=TOKEN_TEMPERATURE_HELP),
    negative_prompt: str = typer.Option("", help="Prompt to steer away from (default: the empty prompt)."),
    base: Optional[Path] = typer.Option(None, help=BASE_HELP),
    device: Optional[str] = typer.Option(None, help=DEVICE_HELP),
    dtype: Optional[str] = typer.Option(None, help=DTYPE_HELP),
    compile: bool = typer.Option(False, "--compile", help=COMPILE_HELP),
):
    """Generate images with the base model alone (no adapter). Under `accelerate launch`, the images are
    split across the processes.

    Example: styledrop generate --prompt "a fish in neon glow style" --n 8 --out runs/gen"""
    from dataclasses import replace

    from ..device import split_draw
    from ..muse.sampler import generate as run
    if n < 1:
        fail(f"--n must be at least 1, got {n}")
    prompt = read_prompts(prompt, prompts_file)
    cfg = sample_config(steps, guidance, seed, token_temperature)
    model = load_base(base, device, dtype, compile)
    prompts = [p for p in prompt for _ in range(n)]
    t = time.time()
    images = split_draw(prompts, seed, lambda ps, s: run(model, ps, replace(cfg, seed=s), negative_prompt))
    if images is None:  # another process of a multi-process launch: the first one writes
        return
    settings = {"steps": steps, "guidance": guidance, "token_temperature": token_temperature,
                "negative_prompt": negative_prompt,
                "base": str(model.path), "base_id": model.model_id(),
                "compiled": compile}  # compiled G may flip a token here and there (float rounding)
    rows = [{"file": f"{i:04d}.png", "prompt": p, "seed": seed + i} | settings for i, p in enumerate(prompts)]
    write_images(out, images, rows)
    err.print(f"wrote {len(images)} images to {out} ({len(images) / (time.time() - t):.1f} images/s)")


@evaluate_app.command("base")
def evaluate_base(
    per_group: int = typer.Option(48, help="Images per group (pretraining pairs, held-out pairs, held-out styles)."),
    steps: int = typer.Option(12, help="MaskGIT decoding steps."),
    guidance: float = typer.Option(SampleConfig.guidance, help="Classifier-free guidance scale."),
    token_temperature: float = typer.Option(SampleConfig.token_temperature, help=TOKEN_TEMPERATURE_HELP),
    seed: int = typer.Option(0, help="Seed of the prompt set's images."),
    base: Optional[Path] = typer.Option(None, help=BASE_HELP),
    device: Optional[str] = typer.Option(None, help=DEVICE_HELP),
    dtype: Optional[str] = typer.Option(None, help=DTYPE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON only."),
):
    """Oracle content/style accuracy and CLIP-T of the base model on a fixed, seeded prompt set.

    Example: styledrop evaluate base --per-group 48 --json"""
    from ..evaluate import evaluate_base as run
    from ..oracle import Oracles
    cfg = sample_config(steps, guidance, seed, token_temperature)
    if per_group < 1:
        fail(f"--per-group must be at least 1, got {per_group}")
    model = load_base(base, device, dtype)
    if not model.knows_world:
        fail(f"evaluate base asks the toy world's questions, which only its oracles can judge, and "
             f"{model.path} is not the toy world's base: measure an adapter with `evaluate style --scorer PATH`")
    with progress_bar() as bar:
        task = bar.add_task("evaluating", total=4, info="")
        report = run(model, Oracles.load(), cfg, per_group, lambda i, n, _: bar.update(task, completed=i))
    if as_json:
        print(json.dumps(report))
        return
    space = report.pop("space")
    for name, r in report.items():
        err.print(f"{name:14s} content {r['content_acc']:.2f}  style {r['style_acc']:.2f}  "
                  f"toy FID {r['fid']:.1f} (real vs real {r['fid_floor']:.1f}, VQ round trip {r['fid_vq']:.1f})  "
                  f"clip_t {r.get('clip_t', float('nan')):.3f}  (n={r['n']})")
    err.print(f"{'space':14s} look: ground {space['ground_acc']:.2f}  fill {space['fill_acc']:.2f}  content "
              f"{space['content_acc']:.2f} (real renders: {space['real_ground_acc']:.2f} / {space['real_fill_acc']:.2f}"
              f" / {space['real_content_acc']:.2f})  toy FID {space['fid']:.1f}  (n={space['n']})")




@app.command()
def bench(
    n: int = typer.Option(16, help="Images per sampling run."),
    steps: int = typer.Option(12, help="MaskGIT decoding steps."),
    repeats: int = typer.Option(2, help="Timed repeats (best is kept) after one warm-up."),
    batch: int = typer.Option(8, help="Adapter-training batch."),
    base: Optional[Path] = typer.Option(None, help=BASE_HELP),
    device: Optional[str] = typer.Option(None, help=DEVICE_HELP),
    dtype: Optional[str] = typer.Option(None, help=DTYPE_HELP),
    compile: bool = typer.Option(True, "--compile/--no-compile", help="Also measure ours with G compiled "
                                 "(torch.compile) against the same eager reference loops."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON only."),
):
    """Side by side in one run: sampling (CFG vs diffusers' AmusedPipeline; batched vs separate guidance; vs an
    AmusedPipeline-style loop), adapter training (vs a train_amused.py-style loop; FLOP/s vs this machine's
    matmul peak), peak memory.

    Example: styledrop bench --json"""
    from ..bench import bench_all
    model = load_base(base, device, dtype)
    if compile:
        check_can_compile(model.device)
    r = bench_all(model, n, steps, repeats, batch, compile)
    if as_json:
        print(json.dumps(r))
        return
    err.print(f"CFG sampling: {r['cfg_images_per_s']:.2f} images/s ({n} images, {steps} steps, "
              f"{r['threads']} threads)")
    err.print(f"adapter guidance: batched {r['guided_batched_s']:.2f}s vs separate {r['guided_separate_s']:.2f}s "
              f"= {r['guided_speedup']:.2f}x, same tokens: {r['guided_same_tokens']}")
    err.print(f"guided sampling vs AmusedPipeline-style loop: {r['sampling_ours_s']:.2f}s vs "
              f"{r['sampling_reference_s']:.2f}s = {r['sampling_speedup']:.2f}x")
    if "pipeline_speedup" in r:
        err.print(f"CFG sampling vs diffusers' AmusedPipeline (latent output, same G): {r['pipeline_ours_s']:.2f}s "
                  f"vs {r['pipeline_diffusers_s']:.2f}s = {r['pipeline_speedup']:.2f}x")
    err.print(f"adapter training step (batch {batch}): {r['train_ours_s'] * 1000:.0f} ms vs train_amused-style "
              f"{r['train_reference_s'] * 1000:.0f} ms = {r['train_speedup']:.2f}x; "
              f"{r['train_flops_per_s'] / 1e9:.1f} GFLOP/s = {100 * r['train_fraction_of_peak']:.0f}% of the "
              f"measured fp32 matmul peak ({r['matmul_peak_flops_per_s'] / 1e9:.0f} GFLOP/s)")
    err.print(f"peak RSS: {r['peak_rss_mb']:.0f} MB")
    if compile:
        c = {k.removeprefix("compiled_"): v for k, v in r.items() if k.startswith("compiled_")}
        err.print(f"with G compiled (torch.compile; the reference loops stay eager): CFG "
                  f"{c['cfg_images_per_s']:.2f} images/s; batched vs separate {c['guided_speedup']:.2f}x; "
                  f"vs the AmusedPipeline-style loop {c['sampling_ours_s']:.2f}s vs {c['sampling_reference_s']:.2f}s "
                  f"= {c['sampling_speedup']:.2f}x; vs AmusedPipeline {c.get('pipeline_speedup', float('nan')):.2f}x; "
                  f"training step {c['train_ours_s'] * 1000:.0f} ms vs "
                  f"{c['train_reference_s'] * 1000:.0f} ms = {c['train_speedup']:.2f}x, "
                  f"{100 * c['train_fraction_of_peak']:.0f}% of the matmul peak; peak RSS {c['peak_rss_mb']:.0f} MB")
