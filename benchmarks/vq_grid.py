"""Originals beside their reconstructions by two tokenizers, for the eye (docs/experiments.md, "Tokenizer").

    python benchmarks/vq_grid.py --a src/styledrop/assets/base --b pretrained_stages --out docs/tokenizer_v2.png

Rows: one held-out style each, then pretraining styles, then pictures drawn outside the world (--images DIR).
Each row: 4 originals, their reconstructions by A, then by B, at 2x.
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from styledrop import world
from styledrop.eval_encoders import load_vq_part
from styledrop.io import image_files, load_image, save_png
from styledrop.oracle import to_tensor


@torch.no_grad()
def recon(vq, images):
    x = vq.decode_indices(vq.encode_indices(to_tensor(images)))
    return list(((x.float().clamp(-1, 1) + 1) * 127.5 + 0.5).byte().permute(0, 2, 3, 1).numpy())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", type=Path, required=True)
    ap.add_argument("--b", type=Path, required=True)
    ap.add_argument("--images", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path("runs/tokenizer_grid.png"))
    args = ap.parse_args()
    va, vb = load_vq_part(args.a), load_vq_part(args.b)
    rows = [[s.image for s in world.batch(4, 5, world.choose_pairs(style=style))]
            for style in (*world.HELDOUT_STYLES, "candy_stripes", "ink_hatching")]
    rows.append([s.image for s in world.batch(4, 5, world.choose_pairs("pretrain", world.SPACE))])
    if args.images:
        own = [load_image(f)[0] for f in image_files([args.images])][:4]
        rows.append(own + own[:1] * (4 - len(own)))
    tiles = []
    for originals in rows:
        tiles += originals + recon(va, originals) + recon(vb, originals)
    grid = world.grid(tiles, cols=12)
    save_png(args.out, np.asarray(grid.resize((grid.width * 2, grid.height * 2), Image.Resampling.NEAREST)))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
