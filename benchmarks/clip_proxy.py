"""A short CLIP run, for choosing the v2 scorer's recipe (docs/experiments.md, CLIP).

    python benchmarks/clip_proxy.py --steps 300 --space 0.5 --threads 1

Prints JSON: the config, seconds per step, and `evaluate clip`'s numbers per split.
"""

import argparse
import json
import time

import torch

from styledrop.eval_encoders import evaluate_clip
from styledrop.muse.text import build_tokenizer
from styledrop.muse.train_clip import ClipTrainConfig, train_clip
from styledrop.scorer import Scorer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=96)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--space", type=float, default=0.5)
    ap.add_argument("--content-only", type=float, default=0.2)
    ap.add_argument("--grouped", type=int, default=0, help="pictures per one-look group in a batch (0: none)")
    ap.add_argument("--patch", type=int, default=8, help="image tower patch size in pixels (8 or 4)")
    ap.add_argument("--content-head", type=float, default=0.0,
                    help="weight of a content-naming head on the image tower (0: none)")
    ap.add_argument("--tower", default="vit", choices=["vit", "conv"], help="the image tower")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-eval", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = ClipTrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, width=args.width, layers=args.layers,
                          space=args.space, content_only=args.content_only, grouped=args.grouped,
                          patch=args.patch, content_head=args.content_head, tower=args.tower)
    tokenizer = build_tokenizer(space=args.space > 0)
    t = time.time()
    clip = train_clip(cfg, tokenizer)
    out = {"config": cfg.recipe(), "steps": args.steps, "s_per_step": round((time.time() - t) / args.steps, 3)}
    for split, r in evaluate_clip(Scorer(clip, tokenizer, None, "proxy"), args.n_eval).items():
        out[split] = {k: round(v, 3) for k, v in r.items()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
