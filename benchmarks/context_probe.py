"""In-context style completion: can G draw ANOTHER object inside a real picture's ground, in its look?

    python benchmarks/context_probe.py [--base runs/base_v3] [--n 16] [--json]

A real render in some style is tokenized; its ring of border tokens (the ground, in its look) is kept and the
inside masked, and G is asked for another object, captioned by content only ("a boat") and with the style's
descriptor ("a boat in molten lava style"; a held-out variant gets its parent's, as the paper's regime captions
it). A third column samples from nothing, content only: how much of the look comes from the context. Content
(the asked object) and style (the context's) are judged by the oracles. The ring is ``grid // 8`` tokens wide
(8 px at 64 px), so 8x8 and 16x16 bases are probed at the same place. Minutes: the quickest measure of whether
a base can draw a shape in a look it meets for the first time, which is what one-image StyleDrop needs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from styledrop import world
from styledrop.evaluate import oracle_scores
from styledrop.muse.base import MuseBase
from styledrop.muse.sampler import SampleConfig, cfg_logits_fn, decode_tokens, tokens_to_images
from styledrop.muse.schedule import ring
from styledrop.oracle import ORACLE_PATH, Oracles, to_tensor

KNOWN = ("watercolor", "neon_glow")


def descriptor_of(style: str) -> str:
    return world.reference_phrase(style)


def probe(base, oracles, style: str, n: int, guidance: float, seed: int) -> dict:
    """One context style: {column: {content_acc, style_acc}} over ``n`` pictures."""
    contents = [c for c in world.PRETRAIN_CONTENTS if c != "house"]
    asked = [contents[(k * 5 + 1) % len(contents)] for k in range(n)]  # a spread of objects, never the context's
    context = [world.sample(k, seed, [("house", style)], "centered").image for k in range(n)]
    cfg = SampleConfig(guidance=guidance, seed=seed)
    with torch.no_grad():
        tokens = base.vq.encode_indices(to_tensor(context).to(base.device)).flatten(1)
        keep = ring(base.grid, max(1, base.grid // 8)).to(tokens.device)
        start = torch.where(keep[None], tokens, base.mask_id)
        out = {}
        columns = {"context_content_only": ([world.caption(c, None) for c in asked], start),
                   "context_descriptor": ([f"{world.caption(c, None)} {descriptor_of(style)}" for c in asked], start),
                   "scratch_content_only": ([world.caption(c, None) for c in asked], None)}
        for name, (prompts, begin) in columns.items():
            ids = decode_tokens(cfg_logits_fn(base, prompts, guidance), n, tokens.shape[1], base.mask_id, cfg,
                                base.device, start=begin)
            out[name] = oracle_scores(oracles, tokens_to_images(base, ids), asked, [style] * n)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default=None, help="base folder (default: the shipped base)")
    ap.add_argument("--styles", nargs="*",
                    default=[*KNOWN, *world.HELDOUT_VARIANTS, *world.HELDOUT_STYLES])
    ap.add_argument("--n", type=int, default=16, help="pictures per style and column")
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true", help="print the report as JSON at the end")
    ap.add_argument("--oracle", type=Path, default=None, help="another oracle file (default: the shipped one, "
                    "the measuring stick of every table)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base, oracles = MuseBase.load(args.base), Oracles.load(args.oracle or ORACLE_PATH)
    print(f"base {base.path} ({base.grid}x{base.grid} tokens, ring {max(1, base.grid // 8)}); content / style, "
          f"{args.n} pictures a cell, guidance {args.guidance}", flush=True)
    print(f"{'context style':18s} {'regime':8s} {'content only':>13s} {'+ descriptor':>13s} {'from scratch':>13s}")
    report = {}
    for style in args.styles:
        r = report[style] = probe(base, oracles, style, args.n, args.guidance, args.seed)
        regime = ("known" if style in world.PRETRAIN_STYLES else "variant" if style in world.HELDOUT_VARIANTS
                  else "hard")
        r["regime"] = regime
        cells = [f"{r[c]['content_acc']:.2f} / {r[c]['style_acc']:.2f}" for c in
                 ("context_content_only", "context_descriptor", "scratch_content_only")]
        print(f"{style:18s} {regime:8s} " + " ".join(f"{c:>13s}" for c in cells), flush=True)
    for regime in ("variant", "hard"):
        rows = [r["context_content_only"] for r in report.values() if r["regime"] == regime]
        if rows:
            content, style = (np.mean([r[k] for r in rows]) for k in ("content_acc", "style_acc"))
            print(f"mean, {regime} regime, context + content only: content {content:.2f} / style {style:.2f}")
    if args.json:
        print(json.dumps({"base": str(base.path), "n": args.n, "guidance": args.guidance, "styles": report}))


if __name__ == "__main__":
    main()
