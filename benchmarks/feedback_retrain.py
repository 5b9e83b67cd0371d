"""Round 2 again from a finished feedback round's kept pictures, at another step count (no new candidates).

    python benchmarks/feedback_retrain.py ROUND_FOLDER ROUND1_ADAPTER REFERENCE --steps 400 --out r2_400.safetensors

ROUND_FOLDER is `styledrop feedback`'s ``OUT.rounds/round2`` (its pictures and scores.jsonl with the choices).
Asks whether round 2's adapter, trained on the reference plus ~10 kept pictures, is short of steps at the
base's default, which was chosen for one picture. Evaluate the result with `styledrop evaluate style`.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from styledrop import adapters
from styledrop.feedback import retrain
from styledrop.muse.base import MuseBase
from styledrop.train import TrainConfig


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("round1", type=Path)
    ap.add_argument("reference", type=Path)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--base", default=None)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base = MuseBase.load(args.base)
    theta, meta = adapters.load(args.round1, base)
    rows = [json.loads(line) for line in (args.folder / "scores.jsonl").read_text().splitlines()]
    kept = [r["id"] for r in rows if r["kept"]]
    images = {i: np.asarray(Image.open(args.folder / f"{i:04d}.png").convert("RGB")) for i in kept}
    reference = np.asarray(Image.open(args.reference).convert("RGB"))
    train = meta["train"]
    new, captions = retrain(base, theta.cfg, meta, [reference], images, rows, kept,
                            TrainConfig(steps=args.steps, lr=train["lr"], batch=train["batch"], seed=args.seed))
    adapters.save(args.out, new, base, meta | {"round": 2})
    print(f"{len(kept)} kept pictures + the reference, {args.steps} steps -> {args.out}; captions {captions[:3]}")


if __name__ == "__main__":
    main()
