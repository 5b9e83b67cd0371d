"""What does G expect from the caption alone? Its argmax at an all-mask grid, per content, in one look.

    python benchmarks/caption_argmax.py [--base runs/base] [--style watercolor] [--out runs/argmax.png]

Every token is masked and G's most likely token is taken at every position at once, for eight objects in one
style, at guidance 0, 2 and 5. A G that reads the object's name draws each object's silhouette here; one that
only reads the look draws the same blob for all eight (G v2 with UVit2D's down/upsampling did,
docs/experiments.md). Printed per guidance: the share of token positions where two contents' argmaxes differ
(mean over pairs; 0 = one picture for all) and the oracle's content accuracy on the decoded argmaxes. Seconds.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import torch

from styledrop import world
from styledrop.evaluate import oracle_scores
from styledrop.muse.base import MuseBase
from styledrop.muse.sampler import cfg_logits_fn, tokens_to_images
from styledrop.oracle import Oracles

CONTENTS = ["heart", "star", "house", "cup", "moon", "tree", "cat", "bird"]


def pairwise_difference(ids: torch.Tensor) -> float:
    """Mean share of positions where two rows of ``ids`` (B, N) differ, over all pairs of rows."""
    pairs = list(itertools.combinations(range(ids.shape[0]), 2))
    return sum((ids[i] != ids[j]).float().mean().item() for i, j in pairs) / len(pairs)


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default=None, help="base folder (default: the shipped base)")
    ap.add_argument("--style", default="watercolor", help="a named pretraining style")
    ap.add_argument("--guidance", type=float, nargs="+", default=[0.0, 2.0, 5.0])
    ap.add_argument("--out", type=Path, help="write the grid here (one row per guidance)")
    args = ap.parse_args()
    if args.style not in world.PRETRAIN_STYLES:
        ap.error(f"unknown pretraining style {args.style!r}; expected one of {', '.join(world.PRETRAIN_STYLES)}")

    base, oracles = MuseBase.load(args.base).eval(), Oracles.load()
    prompts = [world.caption(c, args.style) for c in CONTENTS]
    rows, out = [], {}
    for guidance in args.guidance:
        all_masked = torch.full((len(prompts), base.grid ** 2), base.mask_id, device=base.device)
        logits = cfg_logits_fn(base, prompts, guidance)(all_masked)
        ids = logits.argmax(-1)
        images = tokens_to_images(base, ids)
        rows += list(images)
        scores = oracle_scores(oracles, images, CONTENTS, [args.style] * len(CONTENTS))
        out[f"guidance_{guidance:g}"] = {"differing_positions": round(pairwise_difference(ids), 3),
                                         "content_acc": scores["content_acc"]}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        world.grid(rows, cols=len(CONTENTS)).save(args.out)
    print(json.dumps({"base": str(args.base or "shipped"), "style": args.style, "argmax": out}))


if __name__ == "__main__":
    main()
