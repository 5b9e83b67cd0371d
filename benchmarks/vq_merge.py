"""What merging a VQ's codebook costs: k-means the codes (weighted by how often pictures drawn as its training data
use them) into fewer, then measure PSNR per split with the decoder unchanged, and the token statistics G learns.

    python benchmarks/vq_merge.py --stages pretrained_stages --sizes 1024 512 256 [--save runs/merged]

A G over 4096 codes at 16x16 tokens was too slow to learn objects on 2 cores (docs/experiments.md); fewer codes
shrink its output layer and make tokens easier to predict. No decoder fine-tuning here, so the PSNR lost is an
upper bound of what a merged codebook costs. Prints one JSON line per codebook size.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from styledrop import world
from styledrop.eval_encoders import evaluate_tokenizer, load_vq_part
from styledrop.muse.pretrain import STAGE_RECIPE, recorded_recipe
from styledrop.muse.train_vq import VQTrainConfig, merge_usage
from styledrop.muse.vq import merge_codebook
from styledrop.oracle import Oracles, to_tensor


@torch.no_grad()
def token_stats(vq, n: int = 64, seed: int = 31) -> dict:
    samples = world.batch(n, seed, world.pairs("pretrain"))
    idx = vq.encode_indices(to_tensor([s.image for s in samples])).flatten(1)
    return {"codes_used": int(len(torch.unique(idx))),
            "distinct_per_picture": float(np.mean([len(torch.unique(r)) for r in idx]))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", type=Path, default=Path("pretrained_stages"), help="folder holding vqvae/")
    ap.add_argument("--sizes", type=int, nargs="*", default=[1024, 512, 256])
    ap.add_argument("--n", type=int, default=96, help="pictures per split for the PSNR")
    ap.add_argument("--save", type=Path, default=None, help="write each merged VQ to SAVE/vq{codes} (for g_proxy --vq)")
    ap.add_argument("--no-eval", action="store_true", help="only merge (and --save)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    vq, oracles = load_vq_part(args.stages), Oracles.load()
    made = recorded_recipe(args.stages / "vqvae")  # usage on pictures drawn as its data
    if made is None:
        raise SystemExit(f"{args.stages / 'vqvae'} records no recipe ({STAGE_RECIPE}): cannot draw its data")
    counts = merge_usage(vq, VQTrainConfig(**made))
    for k in [vq.codebook_size] + args.sizes:
        model = vq if k == vq.codebook_size else merge_codebook(vq, counts, k)
        if args.save and model is not vq:
            model.save_pretrained(args.save / f"vq{k}")
        if args.no_eval:
            continue
        r = evaluate_tokenizer(model, oracles, args.n)
        row = {"codes": k, **token_stats(model)}
        row |= {split: {m: round(v, 3) for m, v in s.items() if m in ("psnr", "content_acc", "style_acc")}
                for split, s in r.items() if isinstance(s, dict)}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
