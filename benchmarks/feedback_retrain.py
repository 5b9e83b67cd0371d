"""Round 2 again from a finished feedback round's kept pictures, at another step count (no new candidates).

    python benchmarks/feedback_retrain.py ROUND_FOLDER ROUND1_ADAPTER --steps 400 --out r2_400.safetensors

ROUND_FOLDER is `styledrop feedback`'s ``OUT.rounds/round2`` (its pictures and scores.jsonl with the choices);
the references are the ones round 1 was trained on, as `styledrop feedback` reads them.
Asks whether round 2's adapter, trained on the reference plus ~10 kept pictures, is short of steps at the
base's default, which was chosen for one picture. Evaluate the result with `styledrop evaluate style`.
"""

import argparse
import json
from pathlib import Path

import torch

from styledrop import adapters, world
from styledrop.feedback import FeedbackConfig, retrain, select
from styledrop.io import PictureFolder, load_image
from styledrop.muse.base import MuseBase
from styledrop.oracle import Oracles, oracle_path
from styledrop.train import TrainConfig


def rerate(rows, pictures, reference, rater, keep: int) -> list[int]:
    """The ids the oracle rule keeps when ``rater`` judges the pictures (and the reference's style)."""
    per_prompt = next((i for i, r in enumerate(rows) if r["prompt"] != rows[0]["prompt"]), len(rows))
    by_caption = {world.caption(c, None): c for c in world.CONTENTS}
    contents = [by_caption[rows[k]["prompt"]] for k in range(0, len(rows), per_prompt)]
    rated = [{"id": r["id"], "prompt": r["prompt"], "oracle": view} for r, view in zip(rows, rater.classify(pictures))]
    kept = select(rated, contents, rater.classify([reference])[0]["style"],
                  FeedbackConfig(select="oracle", per_prompt=per_prompt, keep=keep))
    print("kept by the rater:", sorted(rows[i]["prompt"] for i in kept))
    return kept


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("round1", type=Path)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--base", default=None)
    ap.add_argument("--rater", default=None, help="re-rate the pictures with these oracles (space: the space-aware "
                    "judge, or a file) and keep as many by the --select oracle rule, instead of reading the choice")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base = MuseBase.load(args.base)
    theta, meta = adapters.load(args.round1, base)
    rows = [json.loads(line) for line in (args.folder / "scores.jsonl").read_text().splitlines()]
    kept = [r["id"] for r in rows if r["kept"]]
    references = [load_image(p, base.image_size)[0] for p in adapters.trained_images(meta, args.round1)]
    pictures = PictureFolder(args.folder, len(rows))
    if args.rater:
        kept = rerate(rows, pictures, references[0], Oracles.load(oracle_path(args.rater)), len(kept))
    train = meta["train"]
    new, captions, _ = retrain(base, theta.cfg, meta, references, pictures, rows, kept,
                               TrainConfig(steps=args.steps, lr=train["lr"], batch=train["batch"], seed=args.seed),
                               scale_steps=False)
    adapters.save(args.out, new, base, meta | {"round": 2})
    print(f"{len(kept)} kept pictures + {len(references)} reference(s), {args.steps} steps -> {args.out}; "
          f"captions {captions[:3]}")


if __name__ == "__main__":
    main()
