"""Continue the shipped G on a mix of its pretraining pictures and varied renderings (docs/experiments.md).

    python benchmarks/varied_finetune.py --tokens runs/pretrain/tokens.safetensors --out runs/baseV1 \
        [--steps 1500 --varied 0.5 --lr 5e-4 --varied-images 16000]

``--tokens`` is the token cache `styledrop pretrain` leaves in its work folder. ``--varied 0`` is the control
(the same extra steps on the pretraining pictures alone). Then: `python benchmarks/heldout_styles.py --base OUT`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from styledrop import world
from styledrop.io import load_tensors
from styledrop.muse import stages
from styledrop.muse import transformer as tr
from styledrop.muse.base import MuseBase
from styledrop.muse.train_transformer import caption_table, masked_token_loss, token_dataset


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=Path, required=True, help="pretraining token cache (tokens.safetensors)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--varied", type=float, default=0.5, help="fraction of each batch from varied renderings")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--varied-images", type=int, default=16000)
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.time()
    base = MuseBase.load()
    vq, g = base.vq, base.transformer
    tensors, header = load_tensors(args.tokens)
    tok0, meta0 = tensors["tokens"], [tuple(m) for m in header["meta"]]
    # a stream of varied pictures only (varied=1), seeded apart from the pretraining stream
    tok1, meta1 = token_dataset(vq, args.varied_images if args.varied else 1, 11, pose="centered", varied=1.0)
    print(f"tokenized in {time.time() - t0:.0f} s", flush=True)

    content_only = {world.caption(c, None, t) for c in world.PRETRAIN_CONTENTS for t in (0, 1)}
    captions = [""] + sorted({c for *_, c in meta0} | content_only)
    index = {c: i for i, c in enumerate(captions)}
    hidden, pooled = caption_table(base.text_encoder, base.tokenizer, captions)
    full0 = torch.tensor([index[c] for *_, c in meta0])
    only0 = torch.tensor([index[world.caption(c, None, k % 2)] for k, (c, _, _) in enumerate(meta0)])
    full1 = torch.tensor([index[c] for *_, c in meta1])

    gen = torch.Generator().manual_seed(5)
    mask_id, image_size = tr.mask_token_id(g), base.image_size
    g.train().requires_grad_(True)
    opt = torch.optim.AdamW(g.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.01)

    def step(i):
        b = args.batch
        nv = int((torch.rand(b, generator=gen) < args.varied).sum())
        r0, r1 = torch.randint(len(tok0), (b - nv,), generator=gen), torch.randint(len(tok1), (nv,), generator=gen)
        u = torch.rand(b - nv, generator=gen)  # pretraining's caption dropout: 10% empty, 10% content only
        cap0 = torch.where(u < 0.1, 0, torch.where(u < 0.2, only0[r0], full0[r0]))
        cap1 = torch.where(torch.rand(nv, generator=gen) < 0.1, 0, full1[r1])
        cap = torch.cat([cap0, cap1])
        loss = masked_token_loss(g, torch.cat([tok0[r0], tok1[r1]]), hidden[cap], pooled[cap], mask_id, image_size, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(g.parameters(), 1.0)
        opt.step()
        return {"loss": loss.item()}

    def progress(i, n, losses):
        if i % 100 == 0 or i == n:
            print(f"step {i}/{n} loss {losses['loss']:.3f} [{time.time() - t0:.0f} s]", flush=True)

    stages.run(model=g, opt=opt, steps=args.steps, step=step, progress=progress, save=False)
    g.eval().requires_grad_(False)
    base.save(args.out)
    print(f"saved {args.out} in {(time.time() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
