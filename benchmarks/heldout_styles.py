"""StyleDrop on every held-out style, each from ONE 64x64 reference: train, then evaluate vs the base.

    python benchmarks/heldout_styles.py [--regime both] [--steps 300] [--lambda-a 0.5] [--out runs/heldout] [--json]

Two regimes (``--regime``): ``paper``, the held-out variants (new instances of styles G knows, as the paper's
styles are for Muse), each captioned with its parent's descriptor; ``hard``, the four held-out styles, whose looks
no part of G's pretraining draws, each captioned with its own descriptor. ``both`` runs both (the default).

``--references 16``: the perfect-data ceiling instead, an adapter on 16 real renders of the style (the
reference's content, then the evaluated contents): what one image could reach at best on this base. Give it
more steps than one picture needs (``--steps 400``): at the base's 200 it is short of them (docs/experiments.md).

Prints one row per style (adapter vs base on the same prompts), each also as the space-aware second judge reads the
same samples, and writes report.json and the grids. The second judge may say a picture has a look but no named
style's (``space``), where the first must name one: in the hard regime its style numbers are the honest ones. In the
paper regime it is too strict, as the style space draws textures like the variants' in any colour, so an imperfect
variant reads as ``space`` (docs/experiments.md); there the first judge is the one to read.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from styledrop import adapters, world
from styledrop.defaults import describe, settle_all
from styledrop.evaluate import evaluate_style
from styledrop.io import save_png, write_json
from styledrop.muse.base import MuseBase
from styledrop.muse.sampler import SampleConfig
from styledrop.oracle import ORACLE_PATH, Oracles, oracle_path
from styledrop.train import TrainConfig, train_adapter


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # left out, each of these is the base's default (its styledrop.json, else defaults.py), as the CLI's are
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--rank", type=int, default=None)
    ap.add_argument("--kind", default=None, choices=adapters.KINDS)
    ap.add_argument("--placement", default="layers", choices=adapters.PLACEMENTS,
                    help="layers+up: bottleneck sites in G's up block too (ours; the paper's is layers)")
    ap.add_argument("--lambda-a", type=float, default=None)
    ap.add_argument("--lambda-b", type=float, default=None)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--reference-content", default="house")
    ap.add_argument("--pose", default="random", choices=world.POSES, help="pose of the reference picture")
    ap.add_argument("--regime", default="both", choices=("both", "paper", "hard"))
    ap.add_argument("--styles", nargs="*", default=None, help="these styles instead of the regime's")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON at the end")
    ap.add_argument("--token", default=None, help="caption the style 'in TOKEN style' (e.g. '[v]') instead of by "
                    "its descriptor: with a style G knows, the adapter must still learn it from the picture")
    ap.add_argument("--references", type=int, default=1, help="real renders of the style to train on (the paper: 1)")
    ap.add_argument("--max-mask", type=float, default=TrainConfig.max_mask,
                    help="highest masked fraction the adapter trains on (< 1 keeps it off the reference's layout)")
    ap.add_argument("--prior", type=float, default=0.0, help="weight of prior preservation on the base's own "
                    "pictures of content-only captions (DreamBooth's; 0 = off)")
    ap.add_argument("--second-oracle", default="space", help="also judge every sample with these oracles: space (the "
                    "shipped space-aware judge, which may answer 'space' rather than name a held-out style), a file, "
                    "or none")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--base", default=None)
    ap.add_argument("--out", type=Path, default=Path("runs/heldout"))
    ap.add_argument("--oracle", type=Path, default=None, help="another oracle file (default: the shipped one, "
                    "the measuring stick of every table)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base, oracles = MuseBase.load(args.base), Oracles.load(args.oracle or ORACLE_PATH)
    second = Oracles.load(oracle_path(args.second_oracle)) if args.second_oracle != "none" else None
    chosen, sources = settle_all(base, adapter=args.kind, rank=args.rank, lr=args.lr, train_steps=args.steps,
                                 lambda_a=args.lambda_a, lambda_b=args.lambda_b)
    print(f"settings: {describe(chosen, sources)}", flush=True)
    sample = SampleConfig(steps=chosen["sample_steps"], token_temperature=chosen["token_temperature"],
                          temperature=chosen["temperature"])
    report = {}
    styles = args.styles or {"paper": list(world.HELDOUT_VARIANTS), "hard": list(world.HELDOUT_STYLES),
                             "both": [*world.HELDOUT_VARIANTS, *world.HELDOUT_STYLES]}[args.regime]
    prior_prompts = [world.caption(c, None) for c in world.PRETRAIN_CONTENTS for _ in range(2)]
    for style in styles:
        ref = world.sample(0, 0, [(args.reference_content, style)], args.pose).image
        # a variant is captioned as its parent (the paper's "in watercolor style" for a particular watercolor)
        descriptor = world.reference_phrase(style, args.token)
        contents = [args.reference_content] + [c for c in world.PRETRAIN_CONTENTS if c != args.reference_content]
        contents = [contents[k % len(contents)] for k in range(args.references)]
        refs = [ref] + [world.sample(k, 0, [(c, style)], args.pose).image for k, c in enumerate(contents[1:], 1)]
        captions = [f"{world.caption(c, None)} {descriptor}" for c in contents]
        t = time.time()
        acfg = adapters.AdapterConfig(chosen["adapter"], chosen["rank"], args.placement)
        theta = train_adapter(base, refs, captions, acfg,
                              TrainConfig(steps=chosen["train_steps"], lr=chosen["lr"], batch=chosen["batch"],
                                          max_mask=args.max_mask, prior=args.prior),
                              words=descriptor, prior_prompts=prior_prompts)
        train_s = time.time() - t
        r = evaluate_style(base, oracles, theta, {"style": descriptor}, ref, sample, chosen["lambda_a"],
                           chosen["lambda_b"], args.seeds, second=second)
        images = r.pop("images")
        save_png(args.out / f"{style}_reference.png", ref)
        for name, ims in images.items():
            save_png(args.out / f"{style}_{name}.png", np.asarray(world.grid(list(ims), cols=12)))
        r["train_seconds"] = train_s
        r["regime"] = world.regime(style)  # --styles may name pretraining styles ("known"; with --token: the [v] check)
        report[style] = r
        a, b = r["adapter"], r["base"]
        print(f"{style:11s} train {train_s:4.0f}s | adapter style {a['style_acc']:.2f} content {a['content_acc']:.2f} "
              f"leak {a['leakage']:.2f} clip_t {a.get('clip_t', 0):.3f} clip_i {a.get('clip_i', 0):.3f} | "
              f"base style {b['style_acc']:.2f} content {b['content_acc']:.2f} | toy FID adapter {a['fid']:.1f} "
              f"base {b['fid']:.1f} (real vs real {r['fid_floor']:.1f}, VQ round trip {r['fid_vq']:.1f})", flush=True)
        if second is not None:
            a2, b2 = a["second"], b["second"]
            print(f"{'':11s} second oracle | adapter style {a2['style_acc']:.2f} content {a2['content_acc']:.2f} "
                  f"leak {a2['leakage']:.2f} | base style {b2['style_acc']:.2f} content {b2['content_acc']:.2f}",
                  flush=True)
    summary = {}
    for regime in ("paper", "hard", "known"):
        rows = [r for r in report.values() if r["regime"] == regime]
        if not rows:
            continue
        mean = summary[regime] = {k: float(np.mean([r["adapter"][k] for r in rows])) for k in (
            "style_acc", "content_acc", "leakage", "fid")}
        mean |= {"base_style_acc": float(np.mean([r["base"]["style_acc"] for r in rows])),
                 "base_content_acc": float(np.mean([r["base"]["content_acc"] for r in rows]))}
        if second is not None:
            mean["second"] = {f"{who}_{k}": float(np.mean([r[who]["second"][k] for r in rows]))
                              for who in ("adapter", "base") for k in ("style_acc", "content_acc", "leakage")}
        print(f"mean, {regime} regime: adapter style {mean['style_acc']:.2f} content {mean['content_acc']:.2f} "
              f"leak {mean['leakage']:.2f} toy FID {mean['fid']:.1f} | base alone style {mean['base_style_acc']:.2f} "
              f"content {mean['base_content_acc']:.2f}", flush=True)
        if second is not None:
            m2 = mean["second"]
            print(f"  second oracle: adapter style {m2['adapter_style_acc']:.2f} "
                  f"content {m2['adapter_content_acc']:.2f} leak {m2['adapter_leakage']:.2f} | "
                  f"base alone style {m2['base_style_acc']:.2f}", flush=True)
    write_json(args.out / "report.json", {"args": {k: str(v) for k, v in vars(args).items()}, "settings": chosen,
                                          "styles": report, "summary": summary})
    if args.json:
        print(json.dumps({"summary": summary, "styles": {s: {k: r[k] for k in ("regime", "adapter", "base",
                                                                              "train_seconds")}
                                                        for s, r in report.items()}}))


if __name__ == "__main__":
    main()
