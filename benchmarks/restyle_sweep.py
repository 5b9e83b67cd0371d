"""Restyling measured: fresh pretraining-style renders put into each held-out style by its one-image adapter.

    python benchmarks/restyle_sweep.py [--images 48] [--strengths 0.2 0.4 0.6 0.8 1.0] [--out runs/restyle]

For each held-out style: train the default adapter on one house reference, restyle the same fresh renders at
each strength with each selection, and print the oracle's content kept (the input's content) and style gained
(the held-out style). Writes report.json and, per style, a sweep picture (rows: inputs; columns: strengths).
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from styledrop import adapters, world
from styledrop.evaluate import oracle_scores
from styledrop.io import save_png, write_json
from styledrop.muse.base import MuseBase
from styledrop.muse.sampler import DEFAULT_LAMBDA_A, DEFAULT_LAMBDA_B, SampleConfig
from styledrop.oracle import Oracles
from styledrop.restyle import SELECTS, RestyleConfig, restyle
from styledrop.train import TrainConfig, train_adapter


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--strengths", type=float, nargs="*", default=[0.2, 0.4, 0.6, 0.8, 1.0])
    ap.add_argument("--selects", nargs="*", default=list(SELECTS))
    ap.add_argument("--styles", nargs="*", default=list(world.HELDOUT_STYLES))
    ap.add_argument("--base", default=None)
    ap.add_argument("--out", type=Path, default=Path("runs/restyle"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base, oracles = MuseBase.load(args.base), Oracles.load()
    inputs = world.batch(args.images, 21, world.pairs("pretrain"))
    pictures = [s.image for s in inputs]
    report = {}
    for style in args.styles:
        ref = world.sample(0, 0, [("house", style)]).image
        descriptor = world.style_phrase(style)
        theta = train_adapter(base, [ref], f"a house {descriptor}", adapters.AdapterConfig("bottleneck", 8),
                              TrainConfig())
        prompts = [f"{world.caption(s.content, None)} {descriptor}" for s in inputs]
        rows, sweep = {}, []
        for select in args.selects:
            for strength in args.strengths:
                out, _ = restyle(base, pictures, prompts, SampleConfig(steps=12), RestyleConfig(strength, select),
                                 theta, DEFAULT_LAMBDA_A, DEFAULT_LAMBDA_B)
                acc = oracle_scores(oracles, out, [s.content for s in inputs], [style] * len(out))
                rows[f"{select} {strength}"] = acc
                print(f"{style:11s} {select:8s} strength {strength:.1f}: content kept {acc['content_acc']:.2f}, "
                      f"style {acc['style_acc']:.2f}", flush=True)
                if select == args.selects[0]:
                    sweep.append(out[:6])
        report[style] = rows
        columns = [np.stack(pictures[:6])] + sweep
        save_png(args.out / f"{style}_sweep.png",
                 np.asarray(world.grid([c[r] for r in range(6) for c in columns], cols=len(columns))))
    write_json(args.out / "report.json", {"args": {k: str(v) for k, v in vars(args).items()}, "styles": report})
    print(json.dumps(report))


if __name__ == "__main__":
    main()
