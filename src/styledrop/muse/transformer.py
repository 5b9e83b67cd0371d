"""Transformer G: diffusers' ``UVit2DModel``, plus a learned position embedding for the tiny base.

``UVit2DModel`` has no position embedding: position reaches it only through the zero padding
of its 3x3 depthwise convs, so on an all-mask input every interior position gets the same
logits. The tiny base adds a learned (1, C, h, w) table to the output of ``model.embed``
with a forward hook, so diffusers' own forward runs unchanged. The table is saved as the key
``pos_embed.weight`` inside the transformer's own safetensors file; a real aMUSEd transformer
has no such key and runs without it.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import UVit2DModel

POS_KEY = "pos_embed.weight"


class PositionEmbedding(nn.Module):
    def __init__(self, channels: int, grid: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, channels, grid, grid) * 0.02)

    def hook(self, module, inputs, output):  # output: (B, C, h, w) token embeddings
        return output + self.weight.to(output.dtype)


def add_position_embedding(model: UVit2DModel, grid: int, weight: torch.Tensor | None = None) -> UVit2DModel:
    """Attach a position table to ``model`` (as ``model.pos_embed``) and hook it after the embedding."""
    pos = PositionEmbedding(model.config.block_out_channels, grid).to(next(model.parameters()).dtype)
    if weight is not None:
        pos.weight.data.copy_(weight)
    model.pos_embed = pos
    model.embed.register_forward_hook(pos.hook)
    return model


@torch.no_grad()
def init_from_codebook(model: UVit2DModel, codes: torch.Tensor, seed: int = 0) -> UVit2DModel:
    """Start G's token embedding and output layer from the VQ codebook (randomly rotated to G's width).

    A fresh G otherwise has to discover which of the K codes look alike; starting from the codebook's
    geometry, tokens that decode to similar patches start close. Measured on the 8x8 base: lower
    masked-token loss (step 500: 3.11 vs 3.41; after 3500 steps at 50% masking 1.75 vs 2.09) but no
    better oracle content, so it is off by default (docs/experiments.md). Weight scales are kept as initialised."""
    emb, out = model.embed.embeddings.weight, model.mlm_layer.conv2.weight  # (K+1, C), (K, C, 1, 1)
    k, width = out.shape[:2]
    if codes.shape[0] != k or emb.shape[1] != width:
        raise ValueError(f"codebook {tuple(codes.shape)} does not fit G ({k} codes, width {width})")
    rot, _ = torch.linalg.qr(torch.randn(width, codes.shape[1], generator=torch.Generator().manual_seed(seed)))
    vec = F.normalize(codes.float(), dim=-1) @ rot.T * width**0.5  # (K, C), rows of norm sqrt(C)
    emb[:k] = (vec * emb[:k].std()).to(emb.dtype)
    out[:, :, 0, 0] = (vec * out.std()).to(out.dtype)
    return model


HEADS = 4  # attention heads of the tiny G: its width must split evenly among them


def tiny_config(*, codebook_size: int, text_hidden: int, text_proj: int, hidden: int = 256, layers: int = 6,
                channels: int = 128, downsample: bool = True, grid: int = 16) -> dict:
    """A small UVit2DModel for a ``grid`` x ``grid`` token image: downsample/upsample around the transformer
    halve the grid (about 2.5x cheaper per step; without them every token has its own transformer position)."""
    return dict(
        hidden_size=hidden, use_bias=False, hidden_dropout=0.0, cond_embed_dim=text_proj,
        micro_cond_encode_dim=16, micro_cond_embed_dim=16 * 5,  # 5 micro-conditions, as aMUSEd
        encoder_hidden_size=text_hidden, vocab_size=codebook_size + 1, codebook_size=codebook_size,
        in_channels=channels, block_out_channels=channels, num_res_blocks=1, downsample=downsample,
        upsample=downsample,
        block_num_heads=HEADS, num_hidden_layers=layers, num_attention_heads=HEADS, attention_dropout=0.0,
        intermediate_size=hidden * 4, layer_norm_eps=1e-6, ln_elementwise_affine=True, sample_size=grid,
    )


def mask_token_id(model: UVit2DModel) -> int:
    return model.config.vocab_size - 1


def micro_conds(batch: int, image_size: int, device=None) -> torch.Tensor:
    """aMUSEd's micro-conditioning: original width, height, crop top, crop left, aesthetic score 6."""
    return torch.tensor([[image_size, image_size, 0, 0, 6]], device=device).float().expand(batch, 5)


def logits(model: UVit2DModel, ids: torch.Tensor, hidden: torch.Tensor, pooled: torch.Tensor,
           image_size: int) -> torch.Tensor:
    """Flat token ids (B, N) -> logits (B, N, codebook)."""
    b, n = ids.shape
    grid = int(n**0.5)
    out = model(ids.view(b, grid, grid), encoder_hidden_states=hidden, pooled_text_emb=pooled,
                micro_conds=micro_conds(b, image_size, ids.device))
    return out.permute(0, 2, 3, 1).reshape(b, n, -1)  # (B, K, h, w) -> (B, N, K)


def logits_at(model: UVit2DModel, ids: torch.Tensor, hidden: torch.Tensor, pooled: torch.Tensor,
              image_size: int, at: torch.Tensor) -> torch.Tensor:
    """Logits (M, K) at the positions ``at`` (B, N bool) only, for pretraining G.

    With 4096 codes at 256 positions, the output layer and its softmax over every position were a third of
    a training step; the loss needs only the masked ones. The output conv is set aside for the forward and
    applied as a linear layer to the gathered features, so this must not run while another thread uses
    ``model`` (pretraining owns its G; adapters train through ``logits``)."""
    head = model.mlm_layer.conv2
    model.mlm_layer.conv2 = nn.Identity()
    try:
        feats = logits(model, ids, hidden, pooled, image_size)  # (B, N, C) before the output layer
    finally:
        model.mlm_layer.conv2 = head
    return F.linear(feats[at], head.weight[:, :, 0, 0], head.bias)
