"""Re-tune a base's adapter defaults: one-image StyleDrop over a grid of settings, on one or both regimes.

    python benchmarks/adapter_sweep.py --base runs/base_v3 --regime paper --steps 100 200 --lr 5e-4 1e-3 \
        --lambda-a 0.5 1 [--max-mask 1.0 0.7] [--seeds 2] [--out runs/sweep]

Each cell is one run of `benchmarks/heldout_styles.py` (a fresh process; the settings not swept are the base's
defaults) and the table is sorted by content among the cells whose mean style is at least ``--min-style``: the
paper's aim is the style *and* the prompt's content. The chosen cell goes into the base's ``styledrop.json``
by hand, with this table in docs/experiments.md as its source.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
from pathlib import Path

SWEPT = {"steps": "--steps", "lr": "--lr", "lambda_a": "--lambda-a", "lambda_b": "--lambda-b", "max_mask": "--max-mask",
         "rank": "--rank"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default=None)
    ap.add_argument("--regime", default="paper", choices=("paper", "hard", "both"))
    ap.add_argument("--seeds", type=int, default=2, help="evaluation seeds per content (heldout_styles.py's)")
    ap.add_argument("--min-style", type=float, default=0.7)
    ap.add_argument("--out", type=Path, default=Path("runs/sweep"))
    for key, flag in SWEPT.items():
        ap.add_argument(flag, dest=key, nargs="+", type=int if key in ("steps", "rank") else float, default=[None])
    args = ap.parse_args()
    grid = [dict(zip(SWEPT, cell)) for cell in itertools.product(*(getattr(args, k) for k in SWEPT))]
    rows = []
    for k, cell in enumerate(grid):
        flags = [x for key, v in cell.items() if v is not None for x in (SWEPT[key], str(v))]
        cmd = [sys.executable, str(Path(__file__).with_name("heldout_styles.py")), "--regime", args.regime,
               "--seeds", str(args.seeds), "--out", str(args.out / f"cell{k}"), "--json", *flags]
        if args.base:
            cmd += ["--base", args.base]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"cell {cell} failed:\n{r.stderr[-2000:]}")
        summary = json.loads(r.stdout.strip().splitlines()[-1])["summary"]
        for regime, mean in summary.items():
            rows.append({"cell": {k: v for k, v in cell.items() if v is not None}, "regime": regime} | mean)
            print(f"{json.dumps(rows[-1]['cell']):60s} {regime:5s} style {mean['style_acc']:.2f} content "
                  f"{mean['content_acc']:.2f} leak {mean['leakage']:.2f}", flush=True)
    ok = sorted((r for r in rows if r["style_acc"] >= args.min_style), key=lambda r: -r["content_acc"])
    print(f"\nbest content with style >= {args.min_style}:")
    for r in ok[:5]:
        print(f"  {json.dumps(r['cell']):60s} {r['regime']:5s} style {r['style_acc']:.2f} content "
              f"{r['content_acc']:.2f} leak {r['leakage']:.2f}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sweep.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
