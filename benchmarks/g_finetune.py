"""Continue a base's G on its pretraining pictures plus another stream: the quick G-recipe probes of the hard regime.

    python benchmarks/g_finetune.py --tokens runs/pretrain_v3/tokens.safetensors --base runs/base_v3 \
        --out runs/g_ring --steps 1500 [--extra open_space --extra-fraction 0.5] [--ring 0.25]

``--tokens`` is the token cache `styledrop pretrain` leaves in its work folder (it must be the base's own VQ's).
``--extra`` mixes another stream into each batch (``--extra-fraction`` of its rows):
- ``varied``: random renderings captioned by content only (docs/experiments.md: +0.1 content);
- ``space``: the style space as pretraining draws it (its grounds never a held-out style's);
- ``pretrain``: pretraining's own (content, style) pairs, to pair with ``--extra-pose random`` (G saw only
  centered objects, and the hard regime's references and its 16-render ceiling are in random poses);
- ``open_space``: the style space on any ground, held-out styles' ground colours included (their looks stay out:
  ``world.space.too_close(open_grounds=True)``), so that no primitive of a held-out style is new to G.
``--extra-captions content`` captions that stream by content only (G must take the look from the tokens).
``--ring F``: that fraction of rows keep the ring of border tokens (``grid // 8`` deep) always visible and mask
only inside it, captioned by content only: "draw this object inside this ground, in its look", which is what
`benchmarks/context_probe.py` asks. ``--extra 0``-style controls: the same steps with ``--extra none``.
Then judge OUT with `benchmarks/context_probe.py --base OUT` and `benchmarks/heldout_styles.py --base OUT`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from styledrop import world
from styledrop.io import load_tensors
from styledrop.muse import schedule, stages
from styledrop.muse import transformer as tr
from styledrop.muse.base import MuseBase
from styledrop.muse.schedule import ring
from styledrop.muse.train_transformer import caption_table
from styledrop.oracle import to_tensor

EXTRAS = ("none", "varied", "space", "open_space", "pretrain")


@torch.no_grad()
def stream(vq, kind: str, n: int, seed: int, batch: int = 256, pose: str = "centered"):
    """``n`` pictures of one extra stream in ``pose``, tokenized: (tokens (n, N), [(content, caption)])."""
    contents = world.choose_pairs("pretrain", world.SPACE)

    def picture(k):
        if kind == "varied":
            return world.sample(k, seed, [(c, world.VARIED) for c in world.PRETRAIN_CONTENTS], pose)
        if kind == "space":
            return world.sample(k, seed, contents, pose)
        if kind == "pretrain":
            return world.sample(k, seed, world.pairs("pretrain"), pose)
        return world.open_look_sample(k, seed, contents, pose)

    tokens, meta = [], []
    for i in range(0, n, batch):
        samples = [picture(k) for k in range(i, min(n, i + batch))]
        tokens.append(vq.encode_indices(to_tensor([s.image for s in samples]).to(vq.device)).flatten(1).cpu())
        meta += [(s.content, s.caption) for s in samples]
    return torch.cat(tokens), meta


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=Path, required=True, help="the base's pretraining token cache")
    ap.add_argument("--base", default=None, help="base to start from (default: the shipped one)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--extra", default="none", choices=EXTRAS)
    ap.add_argument("--extra-fraction", type=float, default=0.5, help="fraction of each batch from --extra")
    ap.add_argument("--extra-images", type=int, default=16000)
    ap.add_argument("--extra-captions", default="world", choices=("world", "content"))
    ap.add_argument("--extra-pose", default="centered", choices=world.POSES, help="pose of the extra stream's objects")
    ap.add_argument("--ring", type=float, default=0.0, help="fraction of rows trained as ring + inside masked")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if not 0 <= args.ring <= 1 or not 0 <= args.extra_fraction <= 1:
        raise SystemExit("--ring and --extra-fraction are fractions in [0, 1]")
    torch.set_num_threads(args.threads)
    t0 = time.time()
    base = MuseBase.load(args.base)
    g = base.transformer
    tensors, header = load_tensors(args.tokens)
    tok0, meta0 = tensors["tokens"], [tuple(m) for m in header["meta"]]
    if tok0.shape[1] != base.grid**2 or int(tok0.max()) >= base.vq.codebook_size:
        raise SystemExit(f"{args.tokens} is not this base's token cache ({tok0.shape[1]} tokens a picture, "
                         f"the base has {base.grid**2})")
    extra = args.extra != "none" and args.extra_fraction > 0
    tok1, meta1 = stream(base.vq, args.extra, args.extra_images, 11, pose=args.extra_pose) if extra else (tok0[:0], [])
    if args.extra_captions == "content":
        meta1 = [(c, world.caption(c, None, k % 2)) for k, (c, _) in enumerate(meta1)]
    print(f"{len(tok1)} extra pictures ({args.extra}) tokenized in {time.time() - t0:.0f} s", flush=True)

    only = {c: [world.caption(c, None, t) for t in (0, 1)] for c in world.PRETRAIN_CONTENTS}
    captions = [""] + sorted({m[2] for m in meta0} | {c for _, c in meta1} | {x for v in only.values() for x in v})
    index = {c: i for i, c in enumerate(captions)}
    hidden, pooled = caption_table(base.text_encoder, base.tokenizer, captions)
    full0 = torch.tensor([index[m[2]] for m in meta0])
    only0 = torch.tensor([index[only[m[0]][k % 2]] for k, m in enumerate(meta0)])
    full1 = torch.tensor([index[c] for _, c in meta1], dtype=torch.long)
    only1 = torch.tensor([index[only[c][k % 2]] for k, (c, _) in enumerate(meta1)], dtype=torch.long)
    keep = ring(base.grid, max(1, base.grid // 8))

    gen = torch.Generator().manual_seed(args.seed)
    mask_id, image_size = tr.mask_token_id(g), base.image_size
    g.train().requires_grad_(True)
    opt = torch.optim.AdamW(g.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.01)

    def step(i):
        b = args.batch
        nx = int((torch.rand(b, generator=gen) < args.extra_fraction).sum()) if extra else 0
        r0, r1 = torch.randint(len(tok0), (b - nx,), generator=gen), torch.randint(max(1, len(tok1)), (nx,),
                                                                                   generator=gen)
        u = torch.rand(b, generator=gen)  # pretraining's caption dropout: 10% empty, 10% content only
        cap = torch.where(u < 0.1, 0, torch.where(u < 0.2, torch.cat([only0[r0], only1[r1]]),
                                                  torch.cat([full0[r0], full1[r1]])))
        tokens = torch.cat([tok0[r0], tok1[r1]])
        _, mask = schedule.random_mask(tokens, mask_id, gen)
        in_ring = torch.rand(b, generator=gen) < args.ring
        mask = mask & ~(in_ring[:, None] & keep[None])  # the ring stays visible: G reads the look from it
        mask[in_ring, (~keep).nonzero()[0, 0]] = True  # at least one inside token to predict
        cap = torch.where(in_ring & (cap > 0), torch.cat([only0[r0], only1[r1]]), cap)
        inp = torch.where(mask, torch.full_like(tokens, mask_id), tokens)
        out = tr.logits_at(g, inp, hidden[cap], pooled[cap], image_size, mask)
        loss = F.cross_entropy(out.float(), tokens[mask])
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
