"""``styledrop world``, ``styledrop oracle …`` and ``styledrop demo``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .. import world
from ..io import image_files, load_image, staged_dir
from .common import ORACLE_HELP, app, err, fail, jsonl, load_oracles, oracle_app, png_bytes, progress_bar


@app.command("world")
def world_cmd(
    out: Path = typer.Option(..., help="Folder to write the PNGs, metadata.jsonl and grid.png into."),
    n: int = typer.Option(64, help="Number of images."),
    style: Optional[str] = typer.Option(None, help=f"Only this style. One of: {', '.join(world.STYLE_NAMES)}, "
                                               f"or {world.SPACE} (a look drawn per picture from the style space)."),
    look: Optional[str] = typer.Option(None, help="Paint every picture in this style-space look, e.g. "
                                                  "'with red and white dotted fill, a thick black outline, on blue'."),
    content: Optional[str] = typer.Option(None, help=f"Only this content. One of: {', '.join(world.CONTENTS)}."),
    split: Optional[str] = typer.Option(None, help=f"Only pairs of this split. One of: {', '.join(world.SPLITS)}."),
    seed: int = typer.Option(0, help="Same seed, same images, byte for byte."),
):
    """Render captioned toy-world pictures (with ground truth) into a folder.

    Example: styledrop world --n 16 --style space --out runs/space"""
    if n < 1:
        fail(f"--n must be at least 1, got {n}")
    try:
        chosen = world.space.parse_look(look) if look is not None else None
        if chosen is not None and style not in (None, world.SPACE):
            raise ValueError(f"--look paints the style space: it cannot be combined with --style {style}")
        choices = world.choose_pairs(split, world.SPACE if chosen else style, content)
    except ValueError as e:
        fail(str(e))
    files, rows, images = {}, [], []
    with progress_bar() as bar:
        task = bar.add_task("rendering", total=n, info="")
        for i in range(n):
            s = world.sample(i, seed, choices) if chosen is None else world.sample_look(i, seed, choices, chosen)
            name = f"{i:05d}.png"
            files[name] = png_bytes(s.image)
            rows.append({"file": name, "caption": s.caption, "content": s.content, "style": s.style,
                         "split": s.split} | ({"look": s.look} if s.look else {}))
            images.append(s.image)
            bar.advance(task)
    files["metadata.jsonl"] = jsonl(rows)
    files["grid.png"] = png_bytes(world.grid(images[:256]))
    staged_dir(out, files)
    err.print(f"wrote {n} images, metadata.jsonl and grid.png to {out}")


@oracle_app.command("check")
def oracle_check(
    n: int = typer.Option(2000, help="Size of the fresh test set (all pairs, held-out ones included)."),
    seed: int = typer.Option(None, help="Seed of the test set (default: the fixed test seed)."),
    which: str = typer.Option("shipped", "--oracle", help=ORACLE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON only."),
):
    """Accuracy of the oracles on a fresh, seeded test set.

    Example: styledrop oracle check --oracle space --json"""
    from .. import oracle
    if n < 1:
        fail(f"--n must be at least 1, got {n}")
    oracles, seed = load_oracles(which), oracle.TEST_SEED if seed is None else seed
    acc = oracles.accuracy(oracle.test_set(n, seed))
    acc["variants"] = oracle.variant_check(oracles, max(16, n // 10), seed)  # each variant against its parent
    if oracle.SPACE_CLASS in oracles.style_names:  # open-space looks called "space", not a held-out style
        acc["space"] = oracle.space_check(oracles, max(16, n // 4), seed)
    if as_json:
        print(json.dumps(acc))
        return
    ok = lambda a: "[green]ok[/]" if a >= 0.95 else "[red]below 95%[/]"  # noqa: E731
    err.print(f"content accuracy {acc['content_acc']:.3f} {ok(acc['content_acc'])}")
    err.print(f"style accuracy   {acc['style_acc']:.3f} {ok(acc['style_acc'])}")
    for variant, row in acc["variants"].items():
        parent = world.styles.VARIANT_OF[variant]
        err.print(f"{variant} vs {parent}: {row['variant_acc']:.3f} / {row['parent_acc']:.3f} "
                  f"{ok(min(row.values()))}")
    if "space" in acc:
        err.print(f"open-space looks called space {acc['space']['space_acc']:.3f}, "
                  f"a held-out style {acc['space']['called_held_out']:.3f}")


@oracle_app.command("classify")
def oracle_classify(
    paths: list[Path] = typer.Argument(..., help="Image files, or folders whose PNGs are classified."),
    which: str = typer.Option("shipped", "--oracle", help=ORACLE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON only."),
):
    """Predicted content and style, with probabilities, for each image.

    Example: styledrop oracle classify runs/pop --json"""
    files = image_files(paths)
    images = [load_image(f)[0] for f in files]
    preds = [{"file": str(f)} | p for f, p in zip(files, load_oracles(which).classify(images))]
    if as_json:
        print(json.dumps(preds, indent=1))
        return
    table = Table("file", "content", "p", "style", "p")
    for p in preds:
        table.add_row(p["file"], p["content"], f"{p['content_prob']:.2f}", p["style"], f"{p['style_prob']:.2f}")
    Console().print(table)


@oracle_app.command("train")
def oracle_train(
    steps: int = typer.Option(2000, help="Training steps (each on a fresh batch of renders)."),
    batch: int = typer.Option(96, help="Images per step."),
    seed: int = typer.Option(0, help="Seed of the training stream."),
    space: float = typer.Option(0.0, help="Fraction of each batch from the style space on any ground, as a style "
                                "class of its own ('space'); 0 = the shipped oracle's recipe."),
    out: Path = typer.Option(None, help="Where to save (default: the shipped oracle file)."),
):
    """Re-train both oracles from scratch (about 13 minutes on 2 cores) and report test accuracy.

    Example: styledrop oracle train --out runs/oracle.safetensors"""
    from .. import oracle
    if steps < 1 or batch < 1:
        fail("--steps and --batch must be at least 1")
    if not 0 <= space < 1:
        fail(f"--space is a fraction of each batch in [0, 1), got {space}")
    cfg = oracle.OracleConfig(steps=steps, batch=batch, seed=seed, space=space)
    with progress_bar() as bar:
        task = bar.add_task("oracles", total=steps, info="")
        def tick(i, total, losses):
            bar.update(task, completed=i, info=" ".join(f"{k} {v:.3f}" for k, v in losses.items()))
        acc = oracle.train_and_save(cfg, out or oracle.ORACLE_PATH, progress=tick)
    print(json.dumps(acc))


@app.command("demo")
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Where to write the demo's outputs."),
    style: str = typer.Option("amber_neon", help="Toy-world style of the reference: by default a held-out variant "
                              "(the paper's regime); a hard-regime one is pop_art, lava, camouflage or rainbow."),
    steps: Optional[int] = typer.Option(None, help="Adapter training steps (default: the base's)."),
    base: Optional[Path] = typer.Option(None, help="Base model folder (default: the shipped tiny base)."),
):
    """The main job on the embedded default: one reference image of a style the base never saw ->
    a StyleDrop adapter -> 16 new pictures in that style, measured by the oracles. By default the reference is a
    new instance of a style the base knows (amber neon, a neon glow), captioned as its parent, as in the paper.

    Example: styledrop demo --style pop_art --out runs/demo_pop_art"""
    import numpy as np

    from ..demo_page import strip, write_demo_page
    from ..evaluate import oracle_scores
    from ..io import save_png
    from ..muse.base import DEFAULT_BASE
    from ..muse.sampler import generate
    from ..oracle import Oracles
    from .adapter_cmds import sample, train
    from .base_cmds import load_base, sample_config
    t = time.time()
    if style not in world.STYLE_NAMES:
        fail(f"unknown style {style!r}; expected one of {', '.join(world.STYLE_NAMES)}")
    if base is None and not (DEFAULT_BASE / "model_index.json").is_file():
        # no tiny base shipped yet: show what exists, the world and its oracles
        world_cmd(out=out / "world", n=64, style=None, look=None, content=None, split=None, seed=0)
        oracle_check(n=1000, seed=None, which="shipped", as_json=False)
        err.print(f"no base model at {DEFAULT_BASE}: run `styledrop pretrain` to build it, then the demo trains "
                  f"a style adapter. World demo done in {time.time() - t:.0f}s; open {out / 'world' / 'grid.png'}")
        return
    ref = world.sample(0, 0, [("house", style)])
    save_png(out / "reference.png", ref.image)
    descriptor, regime = demo_caption(style)
    err.print(regime)
    err.print(f"reference: {out / 'reference.png'} (a house {descriptor})")
    # the commands are called as functions, so every parameter is spelled out (typer's defaults are not values)
    train(out=out / "style.safetensors", image=[out / "reference.png"], subject=None, more=None, style=descriptor,
          token=None, class_noun=None, prior=0, content="a house", steps=steps, lr=None, batch=None, rank=None,
          placement="layers", adapter=None, seed=0, base=base, device=None, dtype=None, compile=False, fit="crop")
    contents = [c for c in world.PRETRAIN_CONTENTS if c != "house"][:8]
    sample(out=out / "samples", adapter=out / "style.safetensors", subject=None,
           prompt=[world.caption(c, None) for c in contents], prompts=None, n=2, seed=0, steps=None,
           lambda_a=None, lambda_b=None, token_temperature=None,
           negative_prompt="", gamma=0.5, compose="two-theta", base=base, device=None, dtype=None, compile=False)
    rows = [json.loads(x) for x in (out / "samples" / "metadata.jsonl").read_text().splitlines()]
    images = [load_image(out / "samples" / r["file"])[0] for r in rows]
    # the base alone on the same prompts (descriptor included) and seeds: what the adapter adds
    model = load_base(base)
    # plain CFG at the sampler's text guidance (1 + λB) and steps
    alone = generate(model, [r["prompt"] for r in rows], sample_config(rows[0]["steps"], 1 + rows[0]["lambda_b"], 0,
                                                                        rows[0]["token_temperature"],
                                                                        rows[0]["temperature"]))
    wanted = [c for c in contents for _ in range(2)]
    oracles = Oracles.load()
    scores = {"base alone": oracle_scores(oracles, alone, wanted, [style] * len(alone)),
              "StyleDrop": oracle_scores(oracles, images, wanted, [style] * len(images))}
    for name, acc in scores.items():
        err.print(f"oracle on the 16 pictures, {name}: style {acc['style_acc']:.2f}, content {acc['content_acc']:.2f}")
    pairs = [{"prompt": r["prompt"], "seed": r["seed"], "base": a, "styledrop": b}
             for r, a, b in zip(rows, alone, images)]
    save_png(out / "strip.png", np.asarray(strip(ref.image, pairs)))
    write_demo_page(out / "index.html", ref.image, f"a house {descriptor}", pairs, scores,
                    demo_commands(out, descriptor), regime)
    err.print(f"demo done in {time.time() - t:.0f}s; grid: {out / 'samples' / 'grid.png'}")
    err.print(f"open {out / 'index.html'}")


def demo_caption(style: str) -> tuple[str, str]:
    """The reference's style phrase (``world.reference_phrase``) and, in words, which regime the demo shows."""
    name, phrase = style.replace("_", " "), world.reference_phrase(style)
    hard = ("The hard regime (looks no part of pretraining draws: " + ", ".join(world.HELDOUT_STYLES).replace("_", " ")
            + ") is measured by `python benchmarks/heldout_styles.py --regime hard`; try it with "
            "`styledrop demo --style pop_art`.")
    regime = world.regime(style)
    if regime == "paper":
        parent = world.VARIANT_OF[style].replace("_", " ")
        return phrase, (f"The paper's regime: the reference is {name}, a new instance of {parent} that pretraining "
                        f"never showed, captioned with its parent's descriptor ({phrase}). The base alone draws the "
                        "parent's look for that caption; the adapter brings the variant's. " + hard)
    if regime == "hard":
        return phrase, (f"The hard regime: {name} is a look no part of pretraining draws, so the base alone cannot "
                        "draw it from its descriptor; `python benchmarks/heldout_styles.py --regime hard` measures all "
                        "four. The paper's regime (new instances of styles the base knows): `styledrop demo --style "
                        "amber_neon`.")
    return phrase, (f"{name} is a pretraining style: the base alone already draws it from its descriptor, so the "
                    "adapter has little to add. " + hard)


def demo_commands(out: Path, descriptor: str) -> list[str]:
    """What to try after the demo, with its own files."""
    adapter = out / "style.safetensors"
    return [
        f'styledrop sample --adapter {adapter} --prompt "a rocket" --prompt "a cat" --n 8 --out runs/more',
        f"styledrop evaluate style --adapter {adapter} --json",
        f"styledrop feedback --adapter {adapter} --select clip --out runs/round2.safetensors",
        f'styledrop train --image my_picture.png --style "{descriptor}" --out runs/mine.safetensors',
        "styledrop ui",
    ]
