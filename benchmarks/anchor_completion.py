"""How well does G complete a picture from part of its true tokens? A quick, low-noise proxy for G's quality.

    python benchmarks/anchor_completion.py [--base runs/base] [--images 96]

Fresh pretraining-split pictures are tokenized; a random share of their tokens is kept ("anchors"), the
rest masked, and G fills them in with its caption, by MaskGIT decoding (same loop as sampling, the anchors
never re-masked) and in one shot (argmax). The oracle's content accuracy on the results is printed next to
the reconstructions' (the ceiling: what the VQ keeps). A G that has learnt shapes gets close to the ceiling
from 25-50% anchors; sampling from nothing is the 0% column. Minutes, not the hour a full evaluation of a
newly trained G's samples needs for the same noise.
"""

from __future__ import annotations

import argparse
import json

import torch

from styledrop import world
from styledrop.evaluate import oracle_scores
from styledrop.muse.base import MuseBase
from styledrop.muse.sampler import SampleConfig, cfg_logits_fn, decode_tokens, tokens_to_images
from styledrop.oracle import Oracles, to_tensor


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default=None, help="base folder (default: the shipped base)")
    ap.add_argument("--images", type=int, default=96)
    ap.add_argument("--keep", type=float, nargs="+", default=[0.0, 0.1, 0.25, 0.5])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--token-temperature", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=4242)
    args = ap.parse_args()

    base, oracles = MuseBase.load(args.base), Oracles.load()
    samples = world.batch(args.images, args.seed, world.pairs("pretrain"))

    def content_acc(ids):
        images = tokens_to_images(base, ids)
        return oracle_scores(oracles, images, [s.content for s in samples], [s.style for s in samples])["content_acc"]

    with torch.no_grad():
        tokens = base.vq.encode_indices(to_tensor([s.image for s in samples]).to(base.device)).flatten(1)
        fn = cfg_logits_fn(base, [s.caption for s in samples], args.guidance)
        cfg = SampleConfig(steps=args.steps, guidance=args.guidance, token_temperature=args.token_temperature)
        report = {"reconstruction": content_acc(tokens)}
        g = torch.Generator().manual_seed(args.seed)
        for keep in args.keep:
            known = torch.rand(tokens.shape, generator=g).to(tokens.device) < keep
            start = torch.where(known, tokens, base.mask_id)  # the anchors; the rest masked
            ids = decode_tokens(fn, len(tokens), tokens.shape[1], base.mask_id, cfg, base.device, start=start)
            argmax = torch.where(known, tokens, fn(start).argmax(-1))
            row = report[f"keep_{keep:g}"] = {"maskgit": content_acc(ids), "argmax": content_acc(argmax)}
            print(f"anchors {keep:4.0%}: content {row['maskgit']:.3f} (MaskGIT), {row['argmax']:.3f} (argmax); "
                  f"reconstructions {report['reconstruction']:.3f}", flush=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
