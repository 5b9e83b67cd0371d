"""Adapter tuning: G frozen, a small adapter θ learns the reference image(s) under one caption.

The loss is G's own masked-token cross-entropy (``masked_token_loss``). VQ tokens of the
references (and of their mirror images) and the caption's text embedding are computed once
before the loop; each step only runs G with the adapter attached.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from . import adapters
from .device import processes
from .io import UserError
from .muse import stages
from .muse.sampler import SampleConfig, cfg_logits_fn, chunks, decode_tokens
from .muse.text import tokenize
from .muse.train_transformer import masked_token_loss
from .oracle import to_tensor


@dataclass(frozen=True)
class TrainConfig:
    # One 64x64 reference on the tiny base: 200 steps at 1e-3 (12 s) gave oracle style 0.77 / content 0.28 / leakage
    # 0.04 over the held-out styles, vs 0.64 / 0.19 / 0.10 at 300 steps of 2e-3 (docs/experiments.md, "Adapter recipe").
    steps: int = 200
    batch: int = 8
    lr: float = 1e-3
    seed: int = 0
    mirror: bool = True  # also learn the left-right mirror of each reference
    max_mask: float = 1.0  # highest masked fraction trained on (< 1 keeps the adapter off global layout)
    # DreamBooth's prior preservation: the weight of the loss on the base's own samples of ``prior_prompts``
    # (content-only captions), so that the adapter keeps what G draws for them
    prior: float = 0.0

    def __post_init__(self):
        if self.steps < 1 or self.batch < 1:
            raise ValueError(f"steps and batch must be at least 1, got {self.steps} and {self.batch}")
        if not 0 < self.lr < 1:
            raise ValueError(f"lr must be in (0, 1), got {self.lr}")
        if self.prior < 0:
            raise ValueError(f"prior must be >= 0, got {self.prior}")


def caption_for(content: str, style: str) -> str:
    """'a house' + 'in watercolor style' -> 'a house in watercolor style'."""
    return " ".join(part.strip() for part in (content, style) if part and part.strip())


@torch.no_grad()
def reference_tokens(base, images: list[np.ndarray], mirror: bool) -> torch.Tensor:
    x = to_tensor(images)
    if mirror:
        x = torch.cat([x, x.flip(-1)])
    return base.vq.encode_indices(x).flatten(1)  # (R, N)


@torch.no_grad()
def prior_samples(base, prompts: list[str], seed: int):
    """The base's own tokens for ``prompts`` (the sampler's defaults) and their text embeddings, before any adapter."""
    cfg = SampleConfig(seed=seed)
    ids = torch.cat([decode_tokens(cfg_logits_fn(base, prompts[part], cfg.guidance), len(prompts[part]),
                                   base.grid ** 2, base.mask_id, sub, base.device)
                     for part, sub in chunks(base, len(prompts), cfg)])  # bounded logits, as in `sample`
    return (ids, *base.encode_text(prompts))


def train_adapter(base, images: list[np.ndarray], caption: str | list[str], adapter_cfg: adapters.AdapterConfig,
                  cfg: TrainConfig, ckpt=None, progress=None, words: str | None = None,
                  prior_prompts: list[str] | None = None):
    """Returns the trained adapter (detached from G). ``caption`` is one caption for every image, or
    one per image (round 2 of feedback trains on images made for different prompts). ``words``: what a
    ``token`` adapter learns (the style descriptor or the subject's token), which the captions contain.
    ``prior_prompts``: what the base draws for these (before the adapter) is kept at weight ``cfg.prior``."""
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    captions = [caption] * len(images) if isinstance(caption, str) else list(caption)
    assert len(captions) == len(images)
    tokens = reference_tokens(base, images, cfg.mirror)
    captions = captions * (2 if cfg.mirror else 1)  # row k captions token row k
    hidden, pooled = base.encode_text(captions)
    if cfg.prior > 0 and not prior_prompts:
        raise ValueError("prior preservation (prior > 0) needs prior_prompts: the prompts whose pictures to keep")
    prior = prior_samples(base, prior_prompts, cfg.seed) if cfg.prior > 0 else None
    adapter = adapters.build(adapter_cfg, base.transformer, base, words).attach(base.transformer)
    if adapter_cfg.kind == "token" and not any(adapter._spans(tokenize(base.tokenizer, captions))):
        raise UserError(f"the captions do not contain the words the token adapter learns ({words!r})")
    opt = torch.optim.AdamW(adapter.parameters(), lr=cfg.lr, weight_decay=0.0)
    # A float16 G underflows small gradients on their way back to the adapter (7% off fp32 at aMUSEd's 8192 codes):
    # the loss is scaled up before backward and the adapter's fp32 gradients scaled back down (bf16 needs none)
    scaler = torch.amp.GradScaler(base.device.type, enabled=base.dtype == torch.float16)

    world = processes()  # (k, n) under `accelerate launch` / torchrun with n > 1, else None

    def step(i):
        rows = torch.randint(len(tokens), (cfg.batch,), generator=g)
        h, p = hidden[rows], pooled[rows]
        if adapter_cfg.kind == "token":  # the text itself is what is learned: through T each step
            h, p = adapter.encode_text(base, [captions[r] for r in rows.tolist()], grad=True)
        loss = masked_token_loss(base.net, tokens[rows], h, p,
                                 base.mask_id, base.image_size, g, part=world, max_ratio=cfg.max_mask)
        if prior is not None:
            more = torch.randint(len(prior[0]), (cfg.batch,), generator=g)
            loss = loss + cfg.prior * masked_token_loss(base.net, prior[0][more], prior[1][more], prior[2][more],
                                                        base.mask_id, base.image_size, g, part=world)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if world is not None:  # every process holds a share of the global batch: sum the shares
            loss = loss.detach().clone()
            for t in [p.grad for p in adapter.parameters() if p.grad is not None] + [loss]:
                torch.distributed.all_reduce(t)
        scaler.step(opt)  # skipped, with a smaller scale next time, if the scaled gradients overflowed
        scaler.update()
        return {"loss": loss.item()}

    adapter.train()
    try:
        stages.run(model=adapter, opt=opt, steps=cfg.steps, step=step, ckpt=ckpt, every=100,
                   warmup=min(50, cfg.steps // 10 + 1), progress=progress, save=world is None or world[0] == 0,
                   generators={"data": g}, recipe={"adapter": asdict(adapter_cfg)})
    finally:
        adapter.detach()
    return adapter.eval()
