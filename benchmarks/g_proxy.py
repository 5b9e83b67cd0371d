"""A few-minute proxy for a G recipe on given encoders: train G briefly, print its held-out masked-token loss.

    python benchmarks/g_proxy.py --stages runs/v2 --vq pretrained_stages/vqvae --steps 200 --hidden 128

The token cache (``--images`` pictures, ``--space`` of them from the style space) is built once per setting in
``--work``. The loss is measured on fresh pretraining-split pictures at fixed masks (50% and 90% masked, the
states early and late sampling sees), with the full caption and with the content-only one; a G that uses its
caption gains from it: the caption gap (content-only minus full at 90%) says how much the descriptor carries,
and the content gap (the same caption naming another object, minus the right one) how much the object's name
does. The content gap moves long before samples show objects, so it is the first sign that G reads content.
Prints JSON with the wall-clock of the run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import CLIPTokenizer

from styledrop import world
from styledrop.evaluate import oracle_scores
from styledrop.io import load_tensors, save_tensors
from styledrop.muse import transformer as tr
from styledrop.muse.base import MuseBase
from styledrop.muse.pretrain import text_encoder_of
from styledrop.muse.sampler import SampleConfig, generate
from styledrop.muse.toy_clip import load_clip
from styledrop.muse.train_transformer import TransformerTrainConfig, caption_table, token_dataset, train_transformer
from styledrop.muse.vq import TinyVQModel
from styledrop.oracle import Oracles, to_tensor


def tokens_for(vq, work: Path, images: int, space: float, seed: int):
    path = work / f"tokens_{images}_{space:g}_{seed}.safetensors"
    if path.is_file():
        tensors, header = load_tensors(path)
        return tensors["tokens"], [tuple(m) for m in header["meta"]]
    tokens, meta = token_dataset(vq, images, seed, pose="centered", space=space)
    save_tensors(path, {"tokens": tokens}, {"meta": meta})
    return tokens, meta


@torch.no_grad()
def held_out_loss(g, vq, te, tok, n: int = 128, seed: int = 777) -> dict:
    samples = [world.mixed_sample(k, seed, world.pairs("pretrain"), world.choose_pairs("pretrain", world.SPACE), 0.5,
                                  "centered") for k in range(n)]
    tokens = vq.encode_indices(to_tensor([s.image for s in samples])).flatten(1)
    mask_id, size = tr.mask_token_id(g), int(tokens.shape[1] ** 0.5) * vq.scale
    out = {}
    others = world.PRETRAIN_CONTENTS
    def other(c):
        return others[(others.index(c) + 5) % len(others)]
    wrong = [s.caption.replace(f"{world.article(s.content)} {s.content}", f"{world.article(other(s.content))} "
                               f"{other(s.content)}", 1) for s in samples]
    for name, caps in (("full", [s.caption for s in samples]),
                       ("content_only", [world.caption(s.content, None, 0) for s in samples]),
                       ("wrong_content", wrong)):
        hidden, pooled = caption_table(te, tok, caps)
        for ratio in (0.5, 0.9):
            r = torch.rand(tokens.shape, generator=torch.Generator().manual_seed(seed))
            mask = r < ratio
            logits = tr.logits(g, torch.where(mask, mask_id, tokens), hidden, pooled, size)
            out[f"{name}_{ratio:g}"] = round(F.cross_entropy(logits[mask], tokens[mask]).item(), 4)
    out["caption_gap_0.9"] = round(out["content_only_0.9"] - out["full_0.9"], 4)
    # what naming the right object (not another, in the same look) is worth: zero for a G blind to content
    out["content_gap_0.9"] = round(out["wrong_content_0.9"] - out["full_0.9"], 4)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", type=Path, required=True, help="folder with tokenizer/ and clip/")
    ap.add_argument("--vq", type=Path, default=Path("pretrained_stages/vqvae"))
    ap.add_argument("--work", type=Path, default=Path("runs/g_proxy"))
    ap.add_argument("--images", type=int, default=12000)
    ap.add_argument("--space", type=float, default=0.5)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--downsample", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mask-block", type=int, default=1, help="mask whole squares of this many tokens a side")
    ap.add_argument("--codebook-init", action="store_true", help="G's embeddings start from the VQ codebook")
    ap.add_argument("--text", choices=("clip", "random"), default="clip",
                    help="T: the stages' CLIP text tower, or a fresh random one of the same shape (keeps every word)")
    ap.add_argument("--save", type=Path, help="write the trained G here (safetensors, with its config)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    vq = TinyVQModel.from_pretrained(args.vq, torch_dtype=torch.float32).eval()
    tok = CLIPTokenizer.from_pretrained(args.stages / "tokenizer")
    te = text_encoder_of(load_clip(args.stages / "clip", dtype=torch.float32), args.text == "random")
    tokens, meta = tokens_for(vq, args.work, args.images, args.space, 3)
    cfg = TransformerTrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, hidden=args.hidden,
                                 layers=args.layers, channels=args.channels, downsample=args.downsample,
                                 images=args.images, space=args.space, text_encoder=args.text,
                                 codebook_init=args.codebook_init, mask_block=args.mask_block)
    t = time.perf_counter()
    g = train_transformer(cfg, vq, te, tok, tokens, meta)
    seconds = time.perf_counter() - t
    pairs = [world.pairs("pretrain")[i * 7 % len(world.pairs("pretrain"))] for i in range(32)]
    if args.save:
        save_tensors(args.save, g.state_dict(), {"config": dict(g.config), "recipe": cfg.recipe()})
    base = MuseBase(tok, te, vq, g, tr.mask_token_id(g))
    oracles, samples = Oracles.load(), {}
    for block in sorted({1, args.mask_block}):  # a block-trained G sampled token by token and block by block
        images = generate(base, [world.caption(c, s) for c, s in pairs], SampleConfig(seed=0, block=block))
        samples[f"block_{block}"] = oracle_scores(oracles, images, [c for c, _ in pairs],
                                                  [s for _, s in pairs])
    print(json.dumps({"config": {k: v for k, v in vars(args).items() if k not in ("stages", "vq", "work", "save")},
                      "params_M": round(sum(p.numel() for p in g.parameters()) / 1e6, 2),
                      "train_s": round(seconds), "s_per_step": round(seconds / args.steps, 2),
                      "held_out_loss": held_out_loss(g, vq, te, tok), "samples": samples}))


if __name__ == "__main__":
    main()
