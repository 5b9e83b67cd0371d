"""Two θ's on held-out classes: a subject never seen in pretraining (3 images) drawn in a held-out style (1 image).

    python benchmarks/compose_heldout.py [--subject rocket] [--style pop_art] [--steps 300] [--seeds 8]

Trains both adapters, then prints oracle style_acc / subject_acc / clip_t for two-theta (at several γ),
stack and merge, and writes report.json and one grid per row into --out.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from styledrop import adapters, world
from styledrop.compose import evaluate_compose
from styledrop.defaults import describe, settle_all
from styledrop.io import save_png, write_json
from styledrop.muse.base import MuseBase
from styledrop.muse.sampler import SampleConfig
from styledrop.oracle import Oracles
from styledrop.train import TrainConfig, train_adapter

SUBJECT_STYLES = ("sepia_photo", "watercolor", "chalkboard")  # the subject's pictures vary in style


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subject", default="rocket", choices=world.HELDOUT_CONTENTS)
    ap.add_argument("--style", default="pop_art", choices=world.HELDOUT_STYLES + world.HELDOUT_VARIANTS,
                    help="a held-out style (the hard regime) or variant (the paper's: captioned as its parent)")
    ap.add_argument("--steps", type=int, default=None, help="adapter steps (default: the base's)")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--gammas", type=float, nargs="*", default=[0.3, 0.5, 0.7])
    ap.add_argument("--lambda-a", type=float, default=None, help="default: the base's")
    ap.add_argument("--lambda-b", type=float, default=None, help="default: the base's")
    ap.add_argument("--base", default=None)
    ap.add_argument("--out", type=Path, default=Path("runs/compose"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    base, oracles = MuseBase.load(args.base), Oracles.load()
    chosen, sources = settle_all(base, train_steps=args.steps, lambda_a=args.lambda_a, lambda_b=args.lambda_b)
    print(f"settings: {describe(chosen, sources)}", flush=True)
    train = TrainConfig(steps=chosen["train_steps"], lr=chosen["lr"], batch=chosen["batch"])
    sample = SampleConfig(steps=chosen["sample_steps"], token_temperature=chosen["token_temperature"],
                          temperature=chosen["temperature"])
    subject_images = [world.sample(i, 0, [(args.subject, s)]).image for i, s in enumerate(SUBJECT_STYLES)]
    style_ref = world.sample(0, 0, [("house", args.style)]).image
    descriptor = world.reference_phrase(args.style)
    t = time.time()
    cfg = adapters.AdapterConfig(chosen["adapter"], chosen["rank"])
    style = train_adapter(base, [style_ref], f"a house {descriptor}", cfg, train)
    subject = train_adapter(base, subject_images, f"a [v] {args.subject}", cfg, train)
    print(f"trained both adapters in {time.time() - t:.0f}s", flush=True)
    style_meta = {"style": descriptor, "role": "style"}
    subject_meta = {"role": "subject", "token": "[v]", "class": args.subject, "caption": f"a [v] {args.subject}"}
    rows = {}
    for gamma in args.gammas:
        modes = ("two-theta", "stack", "merge") if gamma == args.gammas[len(args.gammas) // 2] else ("two-theta",)
        r = evaluate_compose(base, oracles, style, style_meta, subject, subject_meta, style_ref,
                             sample, gamma=gamma, lambda_a=chosen["lambda_a"], lambda_b=chosen["lambda_b"],
                             seeds=args.seeds, modes=modes)
        for mode in modes:
            name = f"{mode} γ={gamma}" if mode == "two-theta" else mode
            rows[name] = {k: r[mode][k] for k in ("style_acc", "subject_acc", "mean", "clip_t") if k in r[mode]}
            save_png(args.out / f"{name.replace(' ', '_')}.png", np.asarray(world.grid(list(r["images"][mode]))))
            print(f"{name:16s} style {rows[name]['style_acc']:.2f} subject {rows[name]['subject_acc']:.2f} "
                  f"mean {rows[name]['mean']:.2f} clip_t {rows[name].get('clip_t', 0):.3f}", flush=True)
    write_json(args.out / "report.json", {"args": {k: str(v) for k, v in vars(args).items()}, "settings": chosen,
                                          "rows": rows})


if __name__ == "__main__":
    main()
