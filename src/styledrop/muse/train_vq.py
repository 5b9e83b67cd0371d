"""Stage 1 of pretraining: the VQ tokenizer, on pretraining-split renders of the toy world
(named pretraining styles and, for v2, the style space; never a held-out style)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import world
from ..io import UserError
from ..oracle import to_tensor
from . import stages
from .vq import TinyVQModel, code_usage, merge_codebook, reset_dead_codes


@dataclass(frozen=True)
class VQTrainConfig:
    steps: int = 3000
    batch: int = 16
    lr: float = 1e-3
    channels: int = 48
    code_dim: int = 32
    codebook_size: int = 1024
    levels: int = 3  # 8x8 tokens of 8x8 px: G models 64 tokens, each one joint code (docs/experiments.md, "Tokenizer")
    num_res_blocks: int = 2
    space: float = 0.0  # fraction of pictures from the style space (world.SPACE); 0 = the v1 tokenizer's data
    seed: int = 1
    # > 0: the trained codebook is k-means'd into this many codes, weighted by their use on ``merge_pictures``
    # renders drawn as the training data (muse.vq.merge_codebook): 4096 -> 256 costs 2.5 dB (docs/experiments.md)
    merge: int = 0
    merge_pictures: int = 4000
    # > 0: a second leg from the finished weights, a fresh optimiser at a lower lr on pictures of another seed;
    # it won v2's last 0.1 dB on held-out styles (docs/experiments.md, "Tokenizer")
    finetune_steps: int = 0
    finetune_lr: float = 3e-4
    finetune_seed: int = 3

    def __post_init__(self):
        if not 0 <= self.merge < self.codebook_size:
            raise ValueError(f"the VQ's {self.codebook_size} codes can be merged into 1..{self.codebook_size - 1} "
                             f"codes (0 keeps them all), not {self.merge}")

    def recipe(self) -> dict:
        """What makes a run (more steps may continue one); ``space``/``num_res_blocks``/``merge``/``finetune_*``
        only when not v1's."""
        r = {k: v for k, v in asdict(self).items() if k != "steps"}
        if not self.merge:
            r = {k: v for k, v in r.items() if k not in ("merge", "merge_pictures")}
        if not self.finetune_steps:
            r = {k: v for k, v in r.items() if not k.startswith("finetune_")}
        return {k: v for k, v in r.items() if not ((k == "space" and v == 0) or (k == "num_res_blocks" and v == 2))}

    def unmerged(self) -> "VQTrainConfig":
        """The VQ trained before its codebook is merged."""
        return replace(self, merge=0)


def _colour_shuffle(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Permute RGB channels of half the batch: widens the palette the tokenizer has seen
    without showing it a held-out style."""
    perms = torch.tensor([[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 2, 1], [2, 1, 0], [1, 0, 2]])
    choice = perms[torch.randint(6, (x.shape[0],), generator=g)]
    keep = torch.rand(x.shape[0], generator=g) < 0.5
    choice[keep] = perms[0]
    return torch.stack([img[p] for img, p in zip(x, choice)])


def train_vq(cfg: VQTrainConfig, ckpt: Path | None = None, progress=None,
             init: TinyVQModel | None = None) -> TinyVQModel:
    """``init``: start from these weights (a further leg on a finished VQ whose optimiser state is gone).
    With ``cfg.finetune_steps`` the second leg follows, checkpointed beside ``ckpt`` so either leg resumes."""
    if not cfg.finetune_steps:
        return _train_leg(cfg, ckpt, progress, init)
    total = cfg.steps + cfg.finetune_steps  # one progress count over both legs

    def counted(offset):
        return (lambda i, n, losses: progress(offset + i, total, losses)) if progress else None
    vq = _train_leg(cfg, ckpt, counted(0), init)
    leg = replace(cfg, steps=cfg.finetune_steps, lr=cfg.finetune_lr, seed=cfg.finetune_seed, finetune_steps=0)
    # named by the first leg's length: a longer first leg starts a fresh second one, not a stale one resumed
    leg_ckpt = ckpt.with_name(ckpt.name.replace(".ckpt", f".finetune-after{cfg.steps}.ckpt")) if ckpt else None
    return _train_leg(leg, leg_ckpt, counted(cfg.steps), vq)


def _train_leg(cfg: VQTrainConfig, ckpt: Path | None, progress, init: TinyVQModel | None) -> TinyVQModel:
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    vq = TinyVQModel(channels=cfg.channels, code_dim=cfg.code_dim, codebook_size=cfg.codebook_size,
                     levels=cfg.levels, num_res_blocks=cfg.num_res_blocks)
    if init is not None:
        vq.load_state_dict({k: v.float() for k, v in init.state_dict().items()})
    opt = torch.optim.AdamW(vq.parameters(), lr=cfg.lr, weight_decay=0.0)
    choices, space = world.pairs("pretrain"), world.choose_pairs("pretrain", world.SPACE)
    usage = torch.zeros(cfg.codebook_size)

    def step(i):
        imgs = [world.mixed_sample(i * cfg.batch + k, cfg.seed, choices, space, cfg.space).image
                for k in range(cfg.batch)]
        x = _colour_shuffle(to_tensor(imgs), g)
        x_hat, vq_loss, idx = vq(x)
        rec = F.mse_loss(x_hat, x) + 0.5 * F.l1_loss(x_hat, x)
        loss = rec + vq_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        usage.index_add_(0, idx.flatten(), torch.ones(idx.numel()))
        out = {"rec": rec.item(), "vq": vq_loss.item()}
        if (i + 1) % 100 == 0 and i + 1 < cfg.steps * 0.8:
            out["reset"] = reset_dead_codes(vq, usage, vq.encoder(x), g)
            usage.zero_()
        return out

    stages.run(model=vq, opt=opt, steps=cfg.steps, step=step, ckpt=ckpt, progress=progress,
               recipe=cfg.recipe(), generators={"data": g})
    return vq.eval()


def merge_usage(vq, cfg: VQTrainConfig) -> torch.Tensor:
    """How often ``cfg.merge_pictures`` pictures drawn as ``cfg``'s training data use each of ``vq``'s codes."""
    choices, space = world.pairs("pretrain"), world.choose_pairs("pretrain", world.SPACE)
    pictures = [world.mixed_sample(k, cfg.seed + 1, choices, space, cfg.space).image for k in range(cfg.merge_pictures)]
    return code_usage(vq, to_tensor(pictures))


def merge_vq(vq: TinyVQModel, cfg: VQTrainConfig) -> TinyVQModel:
    """``vq`` with its codebook merged into ``cfg.merge`` codes, weighted by use on pictures drawn as its data."""
    try:
        return merge_codebook(vq, merge_usage(vq, cfg), cfg.merge)
    except ValueError as e:  # fewer codes in use than asked for: known only once the VQ is trained
        raise UserError(f"cannot merge the VQ's codebook: {e}") from None


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1]."""
    mse = ((x - y) / 2).pow(2).mean().item()
    return 10 * torch.log10(torch.tensor(1.0 / max(mse, 1e-10))).item()
