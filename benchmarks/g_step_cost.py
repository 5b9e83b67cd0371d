"""What a tokenizer's grid and codebook cost G: one training step of the v0.1 G recipe at batch 32, side by side.

    python benchmarks/g_step_cost.py [--hidden 128] [--repeats 5]

Prints JSON: per (grid, codes), tokens per image, parameters and the median step time, plus ratios to 8x8/1024.
"""

import argparse
import json
import time

import torch
from diffusers import UVit2DModel

from styledrop.muse import schedule
from styledrop.muse import transformer as tr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    setups = [(8, 1024), (16, 4096), (16, 8192)]
    models = {}
    for grid, codes in setups:
        m = UVit2DModel(**tr.tiny_config(codebook_size=codes, text_hidden=128, text_proj=128, hidden=args.hidden,
                                         layers=4, channels=64, downsample=False, grid=grid))
        tr.add_position_embedding(m, grid)
        models[(grid, codes)] = (m, torch.optim.AdamW(m.parameters(), lr=1e-4))
    hidden, pooled = torch.randn(args.batch, 32, 128), torch.randn(args.batch, 128)
    times = {k: [] for k in setups}
    for _ in range(args.repeats + 1):  # interleaved, the first round is warm-up
        for (grid, codes), (m, opt) in models.items():
            tokens = torch.randint(codes, (args.batch, grid * grid), generator=g)
            t = time.perf_counter()
            inp, mask = schedule.random_mask(tokens, tr.mask_token_id(m), g)
            out = tr.logits(m, inp, hidden, pooled, grid * 8)
            loss = torch.nn.functional.cross_entropy(out[mask], tokens[mask])
            opt.zero_grad()
            loss.backward()
            opt.step()
            times[(grid, codes)].append(time.perf_counter() - t)
    ref = sorted(times[setups[0]][1:])[args.repeats // 2]
    report = []
    for (grid, codes), (m, _) in models.items():
        med = sorted(times[(grid, codes)][1:])[args.repeats // 2]
        report.append({"grid": grid, "codes": codes, "tokens": grid * grid,
                       "params_M": round(sum(p.numel() for p in m.parameters()) / 1e6, 2),
                       "step_s": round(med, 3), "vs_8x8_1024": round(med / ref, 2)})
    print(json.dumps({"batch": args.batch, "hidden": args.hidden, "threads": torch.get_num_threads(),
                      "setups": report}))


if __name__ == "__main__":
    main()
