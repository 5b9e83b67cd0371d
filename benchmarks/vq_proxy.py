"""A short VQ run on the style-space data, for choosing the v2 tokenizer (docs/experiments.md, tokenizer).

    python benchmarks/vq_proxy.py --steps 800 --levels 2 --channels 48 --codebook 1024 --space 0.5 --threads 1

    python benchmarks/vq_proxy.py --init pretrained_stages/vqvae --steps 600 --lr 3e-4 --seed 2 --threads 2

``--init``: train on from a finished VQ folder (its shape is taken from the folder; ``--seed`` picks fresh pictures).
Prints JSON: the config, seconds per step, and PSNR / oracle scores on fresh renders of each split.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from styledrop.evaluate import evaluate_vq
from styledrop.muse.train_vq import VQTrainConfig, train_vq
from styledrop.muse.vq import TinyVQModel
from styledrop.oracle import Oracles


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--channels", type=int, default=48)
    ap.add_argument("--code-dim", type=int, default=32)
    ap.add_argument("--codebook", type=int, default=1024)
    ap.add_argument("--res-blocks", type=int, default=2)
    ap.add_argument("--space", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-eval", type=int, default=96)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--init", type=Path, help="a finished VQ folder to train on from")
    ap.add_argument("--save", type=Path, help="save the trained VQ (half precision) to this folder")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shape = dict(channels=args.channels, code_dim=args.code_dim, codebook_size=args.codebook, levels=args.levels,
                 num_res_blocks=args.res_blocks)
    init = TinyVQModel.from_pretrained(args.init, torch_dtype=torch.float32) if args.init else None
    if init is not None:
        shape = {k: init.config[k] for k in shape}
    cfg = VQTrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, space=args.space, seed=args.seed, **shape)
    t = time.time()
    def report(i, total, losses):  # a line every 100 steps on stderr, so a long run in the background shows where it is
        if i % 100 == 0 or i == total:
            line = " ".join(f"{k} {v:.4g}" for k, v in losses.items())
            print(f"step {i}/{total} {line}", file=sys.stderr, flush=True)

    vq = train_vq(cfg, progress=report, init=init)
    sec = (time.time() - t) / args.steps
    oracles = Oracles.load()
    out = {"config": cfg.recipe(), "steps": args.steps, "s_per_step": round(sec, 3),
           "params_M": round(sum(p.numel() for p in vq.parameters()) / 1e6, 2)}
    for split in ("pretrain", "heldout_style", "space"):
        out[split] = {k: round(v, 3) for k, v in evaluate_vq(vq, oracles, args.n_eval, 7, split).items()}
    print(json.dumps(out))
    if args.save:
        vq.half().save_pretrained(args.save)


if __name__ == "__main__":
    main()
