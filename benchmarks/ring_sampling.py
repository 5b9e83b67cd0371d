"""A sampler option to try: one-image StyleDrop sampled inside the reference's own ground.

    python benchmarks/ring_sampling.py [--base runs/base_v3] [--regime both] [--width 0] [--seeds 2] [--json]

The in-context probe (`context_probe.py`) asks whether G draws another object inside a real picture's ring of
border tokens, in its look. This asks the same of StyleDrop: the default adapter (the base's defaults) is trained
on one house per held-out style, then every other content is sampled two ways with the same guidance and seeds:
from an all-mask grid (the paper's sampler), and from the reference's ring of border tokens kept, the inside
masked (the ground comes from the picture, the fill and the object from adapter and text). Content / style /
leakage (the reference's content drawn instead) by the oracles. ``--width 0`` = ``grid // 8`` tokens, the probe's.
The ring copies the reference's border into every picture: a sampler that does so is an option beside the
paper's, never its replacement, and only if it keeps content where the paper's sampler loses it.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from styledrop import world
from styledrop.adapters import AdapterConfig, attached
from styledrop.defaults import describe, settle_all
from styledrop.evaluate import content_prompt, oracle_scores
from styledrop.muse.base import MuseBase
from styledrop.muse.sampler import SampleConfig, decode_tokens, guided_logits_fn, tokens_to_images
from styledrop.muse.schedule import ring
from styledrop.oracle import Oracles, to_tensor
from styledrop.train import TrainConfig, train_adapter


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default=None)
    ap.add_argument("--regime", default="both", choices=("both", "paper", "hard"))
    ap.add_argument("--width", type=int, default=0, help="ring depth in tokens (0: grid // 8)")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base, oracles = MuseBase.load(args.base), Oracles.load()
    chosen, sources = settle_all(base)
    print(f"settings: {describe(chosen, sources)}", flush=True)
    cfg = SampleConfig(steps=chosen["sample_steps"], token_temperature=chosen["token_temperature"],
                       temperature=chosen["temperature"], seed=10_000)
    keep = ring(base.grid, args.width or max(1, base.grid // 8)).to(base.device)
    styles = {"paper": list(world.HELDOUT_VARIANTS), "hard": list(world.HELDOUT_STYLES),
              "both": [*world.HELDOUT_VARIANTS, *world.HELDOUT_STYLES]}[args.regime]
    contents = [c for c in world.PRETRAIN_CONTENTS if c != "house"] * args.seeds
    report = {}
    for style in styles:
        ref = world.sample(0, 0, [("house", style)]).image
        descriptor = world.reference_phrase(style)
        theta = train_adapter(base, [ref], f"{content_prompt('house')} {descriptor}",
                              AdapterConfig(chosen["adapter"], chosen["rank"]),
                              TrainConfig(steps=chosen["train_steps"], lr=chosen["lr"], batch=chosen["batch"]),
                              words=descriptor)
        prompts = [f"{content_prompt(c)} {descriptor}" for c in contents]
        with torch.no_grad():
            ref_ids = base.vq.encode_indices(to_tensor([ref]).to(base.device)).flatten(1)
        start = torch.where(keep[None], ref_ids, base.mask_id).repeat(len(prompts), 1)
        row = {}
        with attached(theta, base.transformer):
            fn = guided_logits_fn(base, prompts, lambda_b=chosen["lambda_b"], adapter=theta,
                                  lambda_a=chosen["lambda_a"])
            for name, begin in (("paper", None), ("ring", start)):
                ids = decode_tokens(fn, len(prompts), base.grid**2, base.mask_id, cfg, base.device, start=begin)
                images = tokens_to_images(base, ids)
                r = oracle_scores(oracles, images, contents, [style] * len(contents))
                r["leakage"] = float(np.mean([p["content"] == "house" for p in oracles.classify(list(images))]))
                row[name] = r
        report[style] = row
        print(f"{style:18s} " + " | ".join(f"{k} style {v['style_acc']:.2f} content {v['content_acc']:.2f} leak "
                                          f"{v['leakage']:.2f}" for k, v in row.items()), flush=True)
    for name in ("paper", "ring"):
        m = {k: float(np.mean([r[name][k] for r in report.values()])) for k in ("style_acc", "content_acc", "leakage")}
        print(f"mean, {name} sampler: style {m['style_acc']:.2f} content {m['content_acc']:.2f} leak "
              f"{m['leakage']:.2f}")
    if args.json:
        print(json.dumps({"settings": chosen, "styles": report}))


if __name__ == "__main__":
    main()
