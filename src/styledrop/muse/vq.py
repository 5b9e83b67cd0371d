"""VQ tokenizer: 64x64 images <-> a grid of discrete codes (8x8 for the tiny base, 16x16 for amused-256).

Two implementations behind one interface (``encode_indices`` / ``decode_indices``):
- ``TinyVQModel``: the embedded default. A plain conv VQ-VAE without normalisation layers
  (a probe found diffusers' ``VQModel`` at this size stuck at ~12.6 dB PSNR on the toy world,
  this design at ~17 dB in the same time), with an l2-normalised codebook looked up by cosine
  similarity, which keeps most codes in use.
- ``DiffusersVQ``: wraps diffusers' ``VQModel``, as shipped in real aMUSEd folders.
Images are float (B, 3, H, W) in [-1, 1]; indices are long (B, h, w).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput


class ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 1)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class TinyVQModel(ModelMixin, ConfigMixin):
    """Conv encoder (stride 4) -> cosine-lookup codebook -> conv decoder."""

    @register_to_config
    def __init__(self, *, channels: int = 32, code_dim: int = 32, codebook_size: int = 512,
                 num_res_blocks: int = 2, sample_size: int = 64, levels: int = 2,
                 block_out_channels: list[int] | None = None, latent_channels: int | None = None,
                 force_upcast: bool = False):
        super().__init__()
        # each level halves the grid: 2 levels -> 16x16 tokens of 4x4 px, 3 levels -> 8x8 tokens of 8x8 px
        widths = [channels * min(2 ** (i + 1), 4) for i in range(levels)]  # 64, 128, 128, ...
        # What diffusers' AmusedPipeline reads of its VQ's config (it sizes the token grid by
        # 2 ** (len(block_out_channels) - 1) and decodes with latent_channels): derived, never read here, so
        # folders saved without them load the same.
        self.register_to_config(block_out_channels=[channels, *widths], latent_channels=code_dim)
        enc, prev = [nn.Conv2d(3, channels, 3, padding=1), nn.ReLU()], channels
        for i, w in enumerate(widths):
            enc.append(nn.Conv2d(prev, w, 4, stride=2, padding=1))
            enc += [nn.ReLU()] if i < levels - 1 else []
            prev = w
        enc += [*[ResBlock(prev) for _ in range(num_res_blocks)], nn.ReLU(), nn.Conv2d(prev, code_dim, 1)]
        self.encoder = nn.Sequential(*enc)
        self.codebook = nn.Embedding(codebook_size, code_dim)
        nn.init.normal_(self.codebook.weight)
        dec = [nn.Conv2d(code_dim, prev, 3, padding=1), *[ResBlock(prev) for _ in range(num_res_blocks)], nn.ReLU()]
        for w in reversed([channels] + widths[:-1]):
            dec += [nn.ConvTranspose2d(prev, w, 4, stride=2, padding=1), nn.ReLU()]
            prev = w
        dec.append(nn.Conv2d(channels, 3, 3, padding=1))
        self.decoder = nn.Sequential(*dec)

    @property
    def scale(self) -> int:
        """Pixels per token side."""
        return 2 ** self.config.levels

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def _codes(self):
        return F.normalize(self.codebook.weight, dim=-1)

    def quantize(self, z):
        """z (B, D, h, w) -> (normalised z, its nearest codes, indices (B, h, w))."""
        z = F.normalize(z, dim=1)
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])  # (B*h*w, D)
        idx = (flat @ self._codes().T).argmax(-1)
        q = self._codes()[idx].view(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
        return z, q, idx.view(z.shape[0], z.shape[2], z.shape[3])

    def forward(self, x):
        """Reconstruction and VQ loss terms, for training: returns (x_hat, vq_loss, indices)."""
        z, q, idx = self.quantize(self.encoder(x))
        vq_loss = F.mse_loss(q, z.detach()) + 0.25 * F.mse_loss(z, q.detach())
        q = z + (q - z).detach()  # straight-through
        return self.decoder(q), vq_loss, idx

    @torch.no_grad()
    def encode_indices(self, x):
        p = next(self.parameters())
        return self.quantize(self.encoder(x.to(p.device, p.dtype)))[2]

    @torch.no_grad()
    def code_vectors(self) -> torch.Tensor:
        """The codebook (K, code_dim) as the decoder sees it."""
        return self._codes()

    @torch.no_grad()
    def decode_indices(self, idx):
        q = self._codes()[idx].permute(0, 3, 1, 2)
        return self.decoder(q).clamp(-1, 1)

    @torch.no_grad()
    def decode(self, indices, force_not_quantize: bool = True, shape=None) -> DecoderOutput:
        """diffusers' ``VQModel.decode`` on token indices, as ``AmusedPipeline`` calls it: pixels in [0, 1]."""
        b, h, w = shape[:3] if shape is not None else indices.shape
        return DecoderOutput(sample=(self.decode_indices(indices.reshape(b, h, w)) + 1) / 2)


PIXELS_PER_CALL = 4 * 256 * 256  # 4 pictures at 256 px, 1 at 512: under 1 GB of VQ activations a call


class DiffusersVQ(nn.Module):
    """The same interface over diffusers' ``VQModel`` (real aMUSEd folders).

    aMUSEd's VQ-GAN works on pixels in [0, 1] (its pipelines preprocess with ``do_normalize=False`` and clip
    the decoder's output to [0, 1]), so pictures are mapped from this package's [-1, 1] and back."""

    def __init__(self, vq):
        super().__init__()
        self.vq = vq
        self.scale = 2 ** (len(vq.config.block_out_channels) - 1)

    @property
    def config(self):
        return self.vq.config

    @property
    def codebook_size(self) -> int:
        return self.vq.config.num_vq_embeddings

    def per_chunk(self, side: int) -> int:
        """Pictures of ``side`` px that one VQ call takes: aMUSEd's VQ-GAN needs about 0.16 GB a picture to encode
        at 256 px and 0.64 GB (0.85 to decode) at 512, so a feedback round's 62 pictures in one call would not fit."""
        return max(1, PIXELS_PER_CALL // (side * side))

    @torch.no_grad()
    def encode_indices(self, x):
        p = next(self.vq.parameters())
        per, out = self.per_chunk(x.shape[-1]), []
        for i in range(0, len(x), per):
            latents = self.vq.encode(((x[i:i + per] + 1) / 2).to(p.device, p.dtype)).latents
            out.append(self.vq.quantize(latents)[2][2].view(-1, latents.shape[2], latents.shape[3]))
        return torch.cat(out)

    @torch.no_grad()
    def code_vectors(self) -> torch.Tensor:
        return self.vq.quantize.embedding.weight

    @torch.no_grad()
    def decode_indices(self, idx):
        b, h, w = idx.shape
        per, out = self.per_chunk(h * self.scale), []
        for i in range(0, b, per):
            part = idx[i:i + per]
            out.append(self.vq.decode(part.reshape(len(part), -1), force_not_quantize=True,
                                      shape=(len(part), h, w, self.vq.config.latent_channels)).sample)
        return torch.cat(out).clamp(0, 1) * 2 - 1


@torch.no_grad()
def round_trip(vq, x: torch.Tensor, batch: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode then decode pictures (B, 3, H, W) in [-1, 1], ``batch`` at a time: (the reconstructions, the
    token indices (B, h, w)), on the CPU."""
    recon, codes = [], []
    for i in range(0, len(x), batch):
        idx = vq.encode_indices(x[i:i + batch])
        recon.append(vq.decode_indices(idx).float().cpu())
        codes.append(idx.cpu())
    return torch.cat(recon), torch.cat(codes)


def psnr(recon: torch.Tensor, x: torch.Tensor) -> float:
    """Mean-squared-error PSNR (dB) between pictures in [-1, 1] (as pixels in [0, 1])."""
    mse = ((recon - x) / 2).pow(2).mean().item()
    return 10 * math.log10(1 / max(mse, 1e-10))


def reset_dead_codes(vq: TinyVQModel, usage: torch.Tensor, z: torch.Tensor, g: torch.Generator) -> int:
    """Move codes unused since the last call onto random encoder outputs of this batch."""
    dead = (usage == 0).nonzero().flatten()
    if len(dead):
        flat = F.normalize(z, dim=1).permute(0, 2, 3, 1).reshape(-1, z.shape[1]).detach()
        pick = torch.randint(len(flat), (len(dead),), generator=g)
        with torch.no_grad():
            vq.codebook.weight[dead] = flat[pick]
    return len(dead)


@torch.no_grad()
def merge_codebook(vq: TinyVQModel, counts: torch.Tensor, k: int, iters: int = 25) -> TinyVQModel:
    """A copy of ``vq`` whose codebook is ``k`` centroids of its codes: spherical k-means weighted by ``counts``
    (how often pictures use each code), started from the ``k`` most used codes. The decoder is unchanged.

    Fewer codes make tokens easier for G to predict and its output layer smaller; on the v2 VQ (4096 codes,
    16x16 tokens) 1024 codes cost 1.2-1.7 dB and 256 codes 2.5 dB, with no fine-tuning (docs/experiments.md)."""
    used = int((counts > 0).sum())
    if not 1 <= k < used:
        raise ValueError(f"can merge {used} used codes into 1..{used - 1}, not {k}")
    codes = vq.code_vectors().float()
    centres = codes[counts.argsort(descending=True)[:k]].clone()
    for _ in range(iters):
        assign = (codes @ centres.T).argmax(-1)
        sums = torch.zeros_like(centres).index_add_(0, assign, codes * counts[:, None].to(codes))
        moved = sums.norm(dim=-1) > 0  # a centre no used code chose stays where it is
        centres[moved] = F.normalize(sums[moved], dim=-1)
    out = TinyVQModel.from_config(vq.config, codebook_size=k)
    state = {n: t for n, t in vq.state_dict().items() if n != "codebook.weight"}
    out.load_state_dict(state | {"codebook.weight": centres.to(vq.codebook.weight.dtype)})
    return out.to(vq.codebook.weight.device, vq.codebook.weight.dtype).eval()


@torch.no_grad()
def code_usage(vq, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """How many times pictures ``x`` (B, 3, H, W) in [-1, 1] use each code: (K,) counts."""
    counts = torch.zeros(vq.codebook_size)
    for i in range(0, len(x), batch):
        counts += torch.bincount(vq.encode_indices(x[i:i + batch]).flatten().cpu(), minlength=vq.codebook_size)
    return counts
