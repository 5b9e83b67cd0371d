"""``styledrop feedback``: round 2 (and more) of StyleDrop with CLIP, oracle, random or manual selection."""

from __future__ import annotations

import functools
import os
import shutil
import time
from pathlib import Path
from typing import Optional

import typer

from ..defaults import describe, settle
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
from .common import app, content_prompts, err, fail, jsonl


@app.command()
def feedback(
    adapter: Path = typer.Option(..., help="Round-1 style adapter (from `styledrop train`)."),
    out: Path = typer.Option(..., help="The new adapter (last round) to write."),
    select: str = typer.Option("clip", help="clip | oracle (stands in for a person) | random | manual."),
    prompts_file: Optional[Path] = typer.Option(None, "--prompts", help="Content prompts, one per line (default: the "
                                                "world's contents on the toy base, 30 everyday subjects on any "
                                                "other)."),
    prompts: int = typer.Option(30, "--n-prompts", help="Content prompts per round (the paper: 30), cycling "
                                "through the list."),
    per_prompt: int = typer.Option(16, help="Images per prompt (the paper: 64)."),
    keep: Optional[int] = typer.Option(None, help="At most this many images kept by oracle selection "
                                       "(default 10, as the paper's raters)."),
    ids: Optional[str] = typer.Option(None, help="With --select manual: comma-separated image ids to keep."),
    rater: str = typer.Option("shipped", help="With --select oracle, which oracles stand in for the person: shipped, "
                              "space (the space-aware judge, which can say a picture has none of the named styles) "
                              "or an oracle file."),
    clip_i_weight: float = typer.Option(0.0, help="Extension: add this times CLIP similarity to the reference."),
    rounds: int = typer.Option(1, help="Feedback rounds; each trains a new adapter on the previous one's picks."),
    steps: Optional[int] = typer.Option(None, help="Training steps of each new adapter (default: the base's, up "
                                        "to twice that from 8 pictures on, as the round trains on the reference "
                                        "plus the kept pictures)."),
    lambda_a: Optional[float] = typer.Option(None, help=LAMBDA_A_HELP + " For the candidates."),
    lambda_b: Optional[float] = typer.Option(None, help=LAMBDA_B_HELP + " For the candidates."),
    seed: int = typer.Option(0, help="Seed of candidates and training."),
    runs: Optional[Path] = typer.Option(None, help="Where every round's images, scores and choices go "
                                        "(default: OUT's name + '.rounds/')."),
    scorer: Optional[Path] = typer.Option(None, help=SCORER_HELP),
    base: Optional[Path] = typer.Option(None, help=BASE_HELP),
    device: Optional[str] = typer.Option(None, help=DEVICE_HELP),
    dtype: Optional[str] = typer.Option(None, help=DTYPE_HELP),
):
    """Generate with the adapter, keep the good images, train a new adapter on reference + kept images.

    Example: styledrop feedback --adapter runs/pop.safetensors --select clip --out runs/pop_r2.safetensors"""
    from .. import adapters, world
    from ..device import processes
    from ..feedback import DEFAULT_PROMPTS, FeedbackConfig, feedback_rounds
    from ..io import load_image, staged_dir
    from ..scorer import NO_SCORER
    from ..train import TrainConfig
    own_prompts = content_prompts(prompts_file, "--n-prompts")
    if keep is not None and keep > prompts * per_prompt:
        fail(f"--keep {keep} is more than the {prompts * per_prompt} images a round makes (--prompts x --per-prompt)")
    model = load_base(base, device, dtype)
    theta, meta = adapters.load(adapter, model)
    chosen, sources = settle(model, {"lambda_a": lambda_a, "lambda_b": lambda_b, "train_steps": steps, "lr": None,
                                     "batch": None, "sample_steps": None, "token_temperature": None,
                                     "temperature": None})
    for key in ("lr", "batch"):  # each new round trains as the given adapter was trained, where its file says how
        if key in meta.get("train", {}):
            chosen[key], sources[key] = meta["train"][key], f"as {adapter.name} was trained"
    lambda_a, lambda_b, steps = chosen["lambda_a"], chosen["lambda_b"], chosen["train_steps"]
    err.print(f"settings: {describe(chosen, sources)}")
    try:
        cfg = FeedbackConfig(select=select, prompts=prompts, per_prompt=per_prompt, keep=keep or 10,
                             clip_i_weight=clip_i_weight, lambda_a=lambda_a, lambda_b=lambda_b, seed=seed,
                             steps=chosen["sample_steps"], token_temperature=chosen["token_temperature"],
                             temperature=chosen["temperature"])
        manual = [int(x) for x in ids.split(",") if x.strip()] if ids else None
        train_cfg = TrainConfig(steps=steps, seed=seed, lr=chosen["lr"], batch=chosen["batch"])
    except ValueError as e:
        fail(str(e))
    if select == "manual" and not manual:
        fail("--select manual needs --ids, e.g. --ids 3,17,40")
    if rounds < 1:
        fail(f"--rounds must be at least 1, got {rounds}")
    oracles, clip = load_eyes(model, scorer, rater)
    if select == "clip" and clip is None:
        fail(NO_SCORER)
    if select == "oracle" and oracles is None:
        fail("--select oracle needs the toy world's oracles, which know only its base's pictures: select by "
             "--select clip (with --scorer), random or manual")
    if own_prompts is None and oracles is None:
        own_prompts = list(DEFAULT_PROMPTS)
    if meta.get("role", "style") != "style":
        err.print(f"warning: {adapter} is a {meta.get('role')} adapter, not a style adapter")
    paths = adapters.trained_images(meta, adapter)
    references = [load_image(p, model.image_size)[0] for p in paths]
    runs = runs or out.with_name(out.name + ".rounds")
    t = time.time()

    first = processes() is None or processes()[0] == 0  # under `accelerate launch` the first process writes

    def folder_for(k):  # candidates go to disk as they are drawn; round k's folder appears whole once it is done
        return runs / f".round{k}.drawing"

    def on_round(k, new, record):
        nonlocal last_info
        if not first:
            return
        pictures, kept = record["images"], set(record["kept"])
        files = {"grid.png": lambda path: world.grid(pictures, cols=per_prompt, cell=128).save(path, format="PNG"),
                 "scores.jsonl": jsonl([r | {"kept": r["id"] in kept} for r in record["scores"]])}
        # the grid is drawn before the pictures move: moving them is a rename each, no copy
        files |= {pictures.path(i).name: functools.partial(os.replace, pictures.path(i)) for i in range(len(pictures))}
        staged_dir(runs / f"round{k}", files)
        shutil.rmtree(folder_for(k), ignore_errors=True)
        info = meta | {"round": k, "feedback": {"select": select, "kept": record["kept"], "from": adapter.name},
                       "train": meta["train"] | {"steps": record["steps"], "lr": chosen["lr"], "batch": chosen["batch"],
                                                 "captions": record["captions"], "images": paths, "sources": sources}}
        adapters.save(runs / f"round{k}" / "adapter.safetensors", new, model, info)
        err.print(f"round {k}: kept {len(kept)} of {len(record['images'])} images ({select}), trained "
                  f"{record['steps']} steps; {time.time() - t:.0f}s so far")
        last_info = info

    last_info = meta
    scale = sources["train_steps"] != "given"
    err.print(f"{rounds} round(s): {prompts} prompts x {per_prompt} images, then {steps} training steps each"
              + (" (up to twice that, as the kept pictures grow)" if scale else ""))
    final = feedback_rounds(model, oracles, theta, meta, references, cfg, train_cfg, folder_for, rounds, manual,
                            on_round, scorer=clip, prompts=own_prompts, scale_steps=scale)
    if first:
        adapters.save(out, final, model, last_info)
        err.print(f"wrote {out}; rounds in {runs}")
