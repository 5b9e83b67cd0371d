"""Stage 3 of pretraining: transformer G, masked-token prediction conditioned on frozen text.

VQ tokens of the training images and text embeddings of every distinct caption are computed
once and cached; each step then only runs G. Captions: 80% content+style, 10% content only,
10% empty (caption dropout, which is what classifier-free guidance needs).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from diffusers import UVit2DModel

from .. import world
from ..oracle import to_tensor
from . import schedule, stages
from . import transformer as tr
from .text import encode_text


@dataclass(frozen=True)
class TransformerTrainConfig:
    # A small G trained on more samples: 2.1M params, 5500 steps of 64 (45 min on 2 cores at 8x8 tokens).
    # G is compute-bound here; at equal wall clock this beats the 8.1M G (hidden 256, channels 128,
    # 3500 steps of 32) on completion from anchors and matches it from scratch (docs/experiments.md).
    steps: int = 5500
    batch: int = 64
    lr: float = 1e-3
    images: int = 40000
    hidden: int = 128
    layers: int = 4
    channels: int = 64
    downsample: bool = False  # UVit2D's down/upsample around the transformer (off: the 8x8 grid is small)
    # G learns from upright, unmirrored pictures near the middle (world pose "centered"); the VQ, CLIP and
    # oracles still see every pose. Random poses: content 0.35 / 0.38, centered: 0.77 / 0.71 (docs/experiments.md).
    pose: str = "centered"
    codebook_init: bool = False  # G starts from the VQ codebook: lower loss, same content (docs/experiments.md)
    bf16: bool = False  # autocast bf16 measured 20-30x slower here for these convs (docs/benchmarks.md)
    seed: int = 3
    # Fraction of the images drawn in a random rendering (world.VARIED, captioned by content only), so that G
    # learns to draw its objects in looks it was never named; 0 = the shipped base's recipe (docs/experiments.md).
    varied: float = 0.0
    # Fraction of the images from the world's style space, captioned by their look's descriptor (1 in 4 by
    # content only), so that G can draw any content in looks between the named styles (v2).
    space: float = 0.0
    # T, the frozen text encoder G reads: "clip" (CLIP's text tower, v1) or "random" (a text tower of the same shape
    # that never saw a picture, as Muse's T5 never did). v2's CLIP cannot see shapes yet, and contrastive training
    # then drowns the object's name in style: 1% of its hidden states' variance across captions is the object's,
    # 44% in v1's CLIP, 61% in a random tower (docs/experiments.md)
    text_encoder: str = "clip"
    # Mask whole mask_block x mask_block squares of tokens in training: a token's neighbours cannot give it away, so
    # only the layout predicts it (1 = token by token, v1)
    mask_block: int = 1

    def __post_init__(self):
        if self.hidden % tr.HEADS:
            raise ValueError(f"must be a multiple of G's {tr.HEADS} attention heads; got {self.hidden}")

    def recipe(self) -> dict:
        """What makes a run of G (more steps may continue one), as its checkpoint records it."""
        return _if_used({k: v for k, v in asdict(self).items() if k != "steps"})

    def data_recipe(self) -> dict:
        """What makes G's token cache: the pictures it learns from."""
        return _if_used({"images": self.images, "seed": self.seed, "pose": self.pose, "varied": self.varied,
                         "space": self.space})


_UNUSED = {"varied": 0.0, "space": 0.0, "text_encoder": "clip", "mask_block": 1}


def _if_used(recipe: dict) -> dict:
    """The keys of ``_UNUSED`` only when not v1's, so caches and checkpoints made before them still match."""
    return {k: v for k, v in recipe.items() if not (k in _UNUSED and v == _UNUSED[k])}


@torch.no_grad()
def token_dataset(vq, n: int, seed: int, batch: int = 256, progress=None, pose: str = "random", varied: float = 0.0,
                  space: float = 0.0):
    """Render ``n`` pretraining-split images and tokenize them: (tokens (n, N), samples' metadata).

    ``varied`` / ``space``: that fraction of the images, spread evenly through the stream, are pretraining
    contents in a random rendering (world.VARIED) / in a style-space look (one of the two)."""
    if varied and space:
        raise ValueError("token_dataset takes varied or space, not both")
    choices = world.pairs("pretrain")
    extra = (world.choose_pairs("pretrain", world.SPACE) if space
             else [(c, world.VARIED) for c in world.PRETRAIN_CONTENTS])

    def picture(k):
        return world.mixed_sample(k, seed, choices, extra, space or varied, pose)

    tokens, meta = [], []
    for i in range(0, n, batch):
        samples = [picture(k) for k in range(i, min(n, i + batch))]
        x = to_tensor([s.image for s in samples]).to(next(vq.parameters()).device)
        tokens.append(vq.encode_indices(x).flatten(1).cpu())
        meta += [(s.content, s.style, s.caption) for s in samples]
        if progress:
            progress(min(n, i + batch), n, {})
    return torch.cat(tokens), meta


@torch.no_grad()
def caption_table(text_encoder, tokenizer, captions: list[str]):
    """Frozen text embeddings of each distinct caption ('' = unconditional): (hidden, pooled)."""
    chunks = [encode_text(text_encoder, tokenizer, captions[i:i + 256], allow_empty=True)
              for i in range(0, len(captions), 256)]
    return torch.cat([h for h, _ in chunks]), torch.cat([p for _, p in chunks])


def autocast(enabled: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if enabled else nullcontext()


def masked_token_loss(model, tokens, hidden, pooled, mask_id, image_size, g, bf16=False, part=None, max_ratio=1.0,
                      masked_only=False, block=1):
    """Cross-entropy on the masked positions of a cosine-masked batch: the loss of G and of adapters.

    ``part=(k, n)``: process k of n runs only rows k, k+n, ... of the batch (masks are still drawn for
    the whole batch, so every process sees the same ones) and divides by the masked count of the
    whole batch: the n processes' gradients then sum to the one-process gradient.
    ``masked_only``: compute logits at the masked positions only (``tr.logits_at``; pretraining's own G)."""
    inp, mask = schedule.random_mask(tokens, mask_id, g, max_ratio, block)
    if part is None and masked_only:
        with autocast(bf16):
            out = tr.logits_at(model, inp, hidden, pooled, image_size, mask)
        return F.cross_entropy(out.float(), tokens[mask])
    if part is None:
        with autocast(bf16):
            out = tr.logits(model, inp, hidden, pooled, image_size)
        return F.cross_entropy(out[mask].float(), tokens[mask])
    rows = slice(part[0], None, part[1])
    with autocast(bf16):
        out = tr.logits(model, inp[rows], hidden[rows], pooled[rows], image_size)
    mine = mask[rows]
    return F.cross_entropy(out[mine].float(), tokens[rows][mine], reduction="sum") / mask.sum()


def train_transformer(cfg: TransformerTrainConfig, vq, text_encoder, tokenizer, tokens, meta,
                      ckpt=None, progress=None, device="cpu", compile: bool = False) -> UVit2DModel:
    """G trained on ``device`` (a GPU where one is at hand: the same steps, in fp32); returned on the CPU.

    ``compile``: run G's forward through ``torch.compile``, with logits at every position (one fixed shape; the
    masked-only head's shape changes every step): 0.59 vs 0.68 s/step eager at v2's G, batch 32, 2 threads."""
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    te = text_encoder.config
    grid = int(tokens.shape[1] ** 0.5)
    model = UVit2DModel(**tr.tiny_config(codebook_size=vq.codebook_size, text_hidden=te.hidden_size,
                                         text_proj=te.projection_dim, hidden=cfg.hidden, layers=cfg.layers,
                                         channels=cfg.channels, downsample=cfg.downsample, grid=grid))
    tr.add_position_embedding(model, grid)
    if cfg.codebook_init:
        tr.init_from_codebook(model, vq.code_vectors(), cfg.seed)
    mask_id = tr.mask_token_id(model)
    image_size = grid * vq.scale

    captions = sorted({c for _, _, c in meta} | {world.caption(c, None, t) for c, _, _ in meta for t in (0, 1)})
    captions = [""] + captions
    index = {c: i for i, c in enumerate(captions)}
    hidden, pooled = caption_table(text_encoder, tokenizer, captions)
    model, tokens, hidden, pooled = model.to(device), tokens.to(device), hidden.to(device), pooled.to(device)
    full = torch.tensor([index[c] for _, _, c in meta])
    content_only = torch.tensor([index[world.caption(c, None, k % 2)] for k, (c, _, _) in enumerate(meta)])

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.01)
    model.train()
    net = torch.compile(model) if compile else model

    def step(i):
        rows = torch.randint(len(tokens), (cfg.batch,), generator=g)
        r = torch.rand(cfg.batch, generator=g)
        cap = torch.where(r < 0.1, 0, torch.where(r < 0.2, content_only[rows], full[rows]))
        loss = masked_token_loss(net, tokens[rows], hidden[cap], pooled[cap], mask_id, image_size, g, cfg.bf16,
                                 masked_only=not compile, block=cfg.mask_block)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return {"loss": loss.item()}

    stages.run(model=model, opt=opt, steps=cfg.steps, step=step, ckpt=ckpt, every=250, progress=progress,
               recipe=cfg.recipe(), generators={"data": g})
    return model.cpu().eval()
