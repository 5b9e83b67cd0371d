"""Tiny models the tests build themselves: a styledrop base and a random aMUSEd-layout folder."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AmusedScheduler, UVit2DModel, VQModel
from transformers import CLIPTextConfig, CLIPTextModelWithProjection

from styledrop.io import write_json
from styledrop.muse.pretrain import PretrainConfig, pretrain
from styledrop.muse.text import build_tokenizer
from styledrop.muse.train_clip import ClipTrainConfig
from styledrop.muse.train_transformer import TransformerTrainConfig
from styledrop.muse.train_vq import VQTrainConfig

TINY = PretrainConfig(
    VQTrainConfig(steps=3, batch=4, channels=8, codebook_size=32),
    ClipTrainConfig(steps=2, batch=8, width=32, layers=1),
    TransformerTrainConfig(steps=3, batch=4, images=16, hidden=32, layers=1, channels=32, bf16=False),
)


def randomised(adapter, std: float = 0.5, seed: int = 0):
    """An adapter with random weights (a new one has W_up = 0 and changes nothing)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in adapter.parameters():
            p.normal_(0, std)
    return adapter


def tiny_base(root: Path):
    return pretrain(TINY, root / "base", root / "work")


def amused_like_folder(path: Path) -> Path:
    """A random folder with amused-256's parts and config keys, at tiny sizes (4x4 tokens, 32 px)."""
    torch.manual_seed(0)
    tokenizer = build_tokenizer(max_length=77)
    UVit2DModel(
        hidden_size=32, use_bias=False, hidden_dropout=0.0, cond_embed_dim=16, micro_cond_encode_dim=2,
        micro_cond_embed_dim=10, encoder_hidden_size=16, vocab_size=40, codebook_size=32, in_channels=16,
        block_out_channels=16, num_res_blocks=1, downsample=True, upsample=True, block_num_heads=1,
        num_hidden_layers=1, num_attention_heads=1, attention_dropout=0.0, intermediate_size=32,
        layer_norm_eps=1e-06, ln_elementwise_affine=True, sample_size=4,
    ).save_pretrained(path / "transformer")
    VQModel(
        act_fn="silu", block_out_channels=[8, 8, 8, 8], down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4, in_channels=3, out_channels=3, latent_channels=8,
        layers_per_block=1, norm_num_groups=8, num_vq_embeddings=32, sample_size=32,
        mid_block_add_attention=False, lookup_from_codebook=True, force_upcast=False,
    ).save_pretrained(path / "vqvae")
    text_cfg = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                              num_hidden_layers=2, num_attention_heads=2, projection_dim=16,
                              max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                              eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    CLIPTextModelWithProjection(text_cfg).save_pretrained(path / "text_encoder")
    tokenizer.save_pretrained(path / "tokenizer")
    AmusedScheduler(mask_token_id=39, masking_schedule="cosine").save_pretrained(path / "scheduler")
    write_json(path / "model_index.json", {
        "_class_name": "AmusedPipeline", "_diffusers_version": "0.25.0",
        "scheduler": ["diffusers", "AmusedScheduler"],
        "text_encoder": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "transformer": ["diffusers", "UVit2DModel"],
        "vqvae": ["diffusers", "VQModel"]})
    return path
