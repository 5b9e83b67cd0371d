"""How well an adapter fits a style it must learn: masked-token loss on its own training renders, on fresh renders
of the same contents and style, and on a style G knows; then what the adapted model draws.

    python benchmarks/adapter_fit.py --style pop_art [--steps 400] [--lr 1e-3] [--rank 8] [--pose centered]
    python benchmarks/adapter_fit.py --style pop_art --full --lr 1e-4   # all of G tuned: the ceiling of any adapter

The adapter is a ceiling adapter: trained on one render of each of 13 pretraining contents in the style, captioned
"a {content} in {descriptor}". Losses are the mean over 4 fixed random masks at 50% and 100% masked; content and
style are the oracles' view of 4 samples per training caption, with the default guidance and with the adapted
model alone (λA 0, λB 0). Also prints the adapter's output norm relative to the residual it is added to, per site.
"""

from __future__ import annotations

import argparse
import copy
import time
from contextlib import contextmanager, nullcontext

import numpy as np
import torch
import torch.nn.functional as F

from styledrop import adapters, world
from styledrop.adapters import attached
from styledrop.muse import stages
from styledrop.muse import transformer as tr
from styledrop.muse.base import MuseBase
from styledrop.muse.sampler import DEFAULT_LAMBDA_A, DEFAULT_LAMBDA_B, SampleConfig, generate, guided_logits_fn
from styledrop.muse.train_transformer import masked_token_loss
from styledrop.oracle import Oracles
from styledrop.train import TrainConfig, reference_tokens, train_adapter

CONTENTS = world.PRETRAIN_CONTENTS[:13]


def render_set(base, style: str, pose: str, seed: int):
    images = [world.sample(k, seed, [(c, style)], pose).image for k, c in enumerate(CONTENTS)]
    captions = [f"{world.caption(c, None)} {world.style_phrase(style)}" for c in CONTENTS]
    return images, captions, reference_tokens(base, images, False)


@torch.no_grad()
def masked_loss(base, tokens, captions, ratio: float, draws: int = 4) -> float:
    g = torch.Generator().manual_seed(0)
    hidden, pooled = base.encode_text(captions)
    out = []
    for _ in range(draws):
        mask = torch.rand(tokens.shape, generator=g).argsort(-1).argsort(-1) < round(ratio * tokens.shape[1])
        logits = tr.logits(base.net, torch.where(mask, base.mask_id, tokens), hidden, pooled, base.image_size)
        out.append(F.cross_entropy(logits[mask], tokens[mask]).item())
    return float(np.mean(out))


def losses(base, sets: dict) -> str:
    return " | ".join(f"{name} {masked_loss(base, t, c, 0.5):.2f} / {masked_loss(base, t, c, 1.0):.2f}"
                      for name, (_, c, t) in sets.items())


def push_ratios(base, theta, tokens, captions) -> list[float]:
    """|adapter output| / |residual it is added to|, per site, on one all-mask forward."""
    ratios = []
    hooks = [m.register_forward_hook(lambda mod, i, out, k=k: ratios.append(
        (theta.delta(k, out).norm(dim=-1) / out.norm(dim=-1)).mean().item()))
        for k, m in enumerate(s.module for s in adapters.sites(base.transformer))]
    try:
        masked_loss(base, tokens, captions, 1.0, draws=1)
    finally:
        for h in hooks:
            h.remove()
    return ratios


def finetune_all(base, images, captions, steps: int, lr: float, parts: list[str] | None = None) -> torch.nn.Module:
    """A copy of G with every weight trained on the renders (the adapter's loss and batch): what no adapter can beat.
    ``parts``: only G's top-level modules of these names are trained (where in G a new look is learned)."""
    tuned = copy.deepcopy(base.transformer).train().requires_grad_(parts is None)
    for name in parts or []:
        getattr(tuned, name).requires_grad_(True)
    trained = [p for p in tuned.parameters() if p.requires_grad]
    print(f"tuning {sum(p.numel() for p in trained)} of {sum(p.numel() for p in tuned.parameters())} weights of G "
          f"({', '.join(parts) if parts else 'all'})", flush=True)
    tokens = reference_tokens(base, images, True)
    hidden, pooled = base.encode_text(captions * 2)
    opt = torch.optim.AdamW(trained, lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)

    def step(i):
        rows = torch.randint(len(tokens), (TrainConfig.batch,), generator=g)
        loss = masked_token_loss(tuned, tokens[rows], hidden[rows], pooled[rows], base.mask_id, base.image_size, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    stages.run(model=tuned, opt=opt, steps=steps, step=step, warmup=min(50, steps // 10 + 1))
    return tuned.eval()


@contextmanager
def swapped(base, tuned):
    """``base`` with G replaced by ``tuned`` (losses of the tuned model)."""
    original = base.transformer
    base.transformer = tuned
    try:
        yield
    finally:
        base.transformer = original


def full_logits_fn(base, tuned, prompts, lambda_a: float, lambda_b: float):
    """The guided formula with the tuned copy as Ĝθ: Ĝθ(t) + λA(Ĝθ(t) − G(t)) + λB(G(t) − G(n))."""
    t_h, t_p = base.encode_text(prompts)
    n_h, n_p = base.encode_empty(len(prompts))

    @torch.no_grad()
    def fn(ids):
        a = tr.logits(tuned, ids, t_h, t_p, base.image_size)
        c = tr.logits(base.transformer, ids, t_h, t_p, base.image_size)
        u = tr.logits(base.transformer, ids, n_h, n_p, base.image_size)
        return a + lambda_a * (a - c) + lambda_b * (c - u)
    return fn


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--style", default="pop_art", choices=world.STYLE_NAMES)
    ap.add_argument("--known", default="watercolor", choices=world.STYLE_NAMES, help="a style G was trained on")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--lr", type=float, default=TrainConfig.lr)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--kind", default="bottleneck", choices=[k for k in adapters.KINDS if k != "token"])
    ap.add_argument("--pose", default="centered", choices=world.POSES)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--base", default=None)
    ap.add_argument("--full", action="store_true", help="tune all of G instead of an adapter (the ceiling)")
    ap.add_argument("--parts", nargs="*", default=None,
                    help="with --full: tune only these top-level modules of G (e.g. up_block mlm_layer)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    base, oracles = MuseBase.load(args.base), Oracles.load()
    sets = {"train": render_set(base, args.style, args.pose, 0), "fresh": render_set(base, args.style, args.pose, 9),
            args.known: render_set(base, args.known, args.pose, 0)}
    images, captions, tokens = sets["train"]
    print(f"G alone  {losses(base, sets)}  (loss at 50% / 100% masked)", flush=True)
    t = time.time()
    if args.full:
        theta, tuned = None, finetune_all(base, images, captions, args.steps, args.lr, args.parts)
    else:
        theta = train_adapter(base, images, captions, adapters.AdapterConfig(args.kind, args.rank),
                              TrainConfig(steps=args.steps, lr=args.lr))
    print(f"trained {args.steps} steps at lr {args.lr} in {time.time() - t:.0f} s", flush=True)
    prompts = [c for c in captions for _ in range(args.seeds)]
    wanted = [c for c in CONTENTS for _ in range(args.seeds)]
    with attached(theta, base.transformer) if theta is not None else nullcontext():
        if theta is not None and args.kind == "bottleneck":
            print("adapter push per site " + " ".join(f"{r:.2f}" for r in push_ratios(base, theta, tokens, captions)))
        with swapped(base, tuned) if args.full else nullcontext():
            print(f"adapted  {losses(base, sets)}", flush=True)
        for la, lb in ((DEFAULT_LAMBDA_A, DEFAULT_LAMBDA_B), (0.0, 0.0)):
            fn_for = ((lambda ps: full_logits_fn(base, tuned, ps, la, lb)) if args.full else
                      (lambda ps: guided_logits_fn(base, ps, lambda_b=lb, adapter=theta, lambda_a=la)))
            pics = generate(base, prompts, SampleConfig(steps=12), logits_fn_for=fn_for)
            preds = oracles.classify(list(pics))
            content = np.mean([p["content"] == c for p, c in zip(preds, wanted)])
            style = np.mean([p["style"] == args.style for p in preds])
            print(f"samples λA {la} λB {lb}: content {content:.2f} style {style:.2f}", flush=True)


if __name__ == "__main__":
    main()
