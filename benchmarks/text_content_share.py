"""How much of what T gives G is the object's name: the share of the variance of T's outputs across captions of
6 named pretraining styles x 13 pretraining contents that the content explains (the style explains most of the rest).

    python benchmarks/text_content_share.py --stages pretrained_stages [--random]

G reads T's penultimate hidden states (and its pooled projection). A T that maps "a cat in X" and "a dog in X" to
nearly one point leaves G nothing to draw the object from (docs/experiments.md: 44% for v1's CLIP, 1% for a CLIP
whose image tower never saw shapes, 56-61% for a fresh random tower, 72% for CLIP v2). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from transformers import CLIPTokenizer

from styledrop import world
from styledrop.muse.pretrain import text_encoder_of
from styledrop.muse.text import encode_text
from styledrop.muse.toy_clip import load_clip


def content_share(x: torch.Tensor) -> float:
    """x (styles, contents, D): variance of the per-content means over the total variance."""
    total = x.var(dim=(0, 1), unbiased=False).sum()
    return float(x.mean(0).var(0, unbiased=False).sum() / total)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", type=Path, required=True, help="folder with tokenizer/ and clip/ (or clip_scorer/)")
    ap.add_argument("--random", action="store_true", help="a freshly initialised tower of the same shape instead")
    args = ap.parse_args()
    clip_dir = next(args.stages / d for d in ("clip", "clip_scorer") if (args.stages / d).is_dir())
    te = text_encoder_of(load_clip(clip_dir, dtype=torch.float32), random=args.random)
    tok = CLIPTokenizer.from_pretrained(args.stages / "tokenizer")
    styles, contents = world.PRETRAIN_STYLES[:6], world.PRETRAIN_CONTENTS
    caps = [world.caption(c, s) for s in styles for c in contents]
    hidden, pooled = encode_text(te, tok, caps)
    shape = (len(styles), len(contents), -1)
    print(json.dumps({"clip": str(clip_dir), "random": args.random,
                      "hidden": round(content_share(hidden.reshape(*shape)), 4),
                      "pooled": round(content_share(pooled.reshape(*shape)), 4)}))


if __name__ == "__main__":
    main()
