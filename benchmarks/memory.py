"""Peak memory of each command's work on a stand-in with aMUSEd's real VQ-GAN (146M parameters, 8192 codes).

    python benchmarks/memory.py [--sizes 256 512] [--dtypes float32 bfloat16] [--ops train1 train30 sample16 ...]

The VQ-GAN is the part whose memory grows with the number of pictures (its activations at 256 / 512 px), so it
is built at amused's exact geometry (diffusers' scripts/convert_amused.py: block_out_channels 128-256-256-512-768,
latent 64, 8192 codes); G is a smaller UVit2D (``--g-hidden``, ``--g-layers``) with amused's token grid, text
width and vocabulary, since its weights are a fixed cost (≈1.2 GB of amused's 1.6 GB in bf16) that any run pays
once. Each measurement runs in its own process: the peak is the process's peak resident memory on the CPU (VmHWM,
reset once the models are loaded and paged in; ``torch.cuda.max_memory_allocated`` on a GPU) minus what it held
then, so the table shows the work's own memory, which the chunked VQ keeps bounded. Random weights: memory does
not depend on them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

OPS = ("train1", "train30", "sample16", "restyle16", "feedback_round2")


def build(folder: Path, size: int, hidden: int, layers: int) -> None:
    """A random aMUSEd-layout folder: the real VQ-GAN, amused's text width and vocabulary, a smaller G."""
    import torch
    from diffusers import AmusedScheduler, UVit2DModel, VQModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from styledrop.io import write_json
    from styledrop.muse.text import build_tokenizer
    torch.manual_seed(0)
    tokenizer = build_tokenizer(max_length=77)
    grid = size // 16
    UVit2DModel(hidden_size=hidden, use_bias=False, hidden_dropout=0.0, cond_embed_dim=768, micro_cond_encode_dim=256,
                micro_cond_embed_dim=1280, encoder_hidden_size=768, vocab_size=8256, codebook_size=8192,
                in_channels=768, block_out_channels=768, num_res_blocks=3, downsample=size == 512,
                upsample=size == 512, block_num_heads=12, num_hidden_layers=layers,
                num_attention_heads=max(1, hidden // 64), attention_dropout=0.0, intermediate_size=hidden * 4,
                layer_norm_eps=1e-06, ln_elementwise_affine=True, sample_size=grid,
                ).save_pretrained(folder / "transformer")
    VQModel(act_fn="silu", block_out_channels=[128, 256, 256, 512, 768], down_block_types=["DownEncoderBlock2D"] * 5,
            up_block_types=["UpDecoderBlock2D"] * 5, in_channels=3, out_channels=3, latent_channels=64,
            layers_per_block=2, norm_num_groups=32, num_vq_embeddings=8192, sample_size=32,
            mid_block_add_attention=False, lookup_from_codebook=True, force_upcast=False,
            ).save_pretrained(folder / "vqvae")
    CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=768, intermediate_size=3072, num_hidden_layers=2,
        num_attention_heads=12, projection_dim=768, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
    ).save_pretrained(folder / "text_encoder")
    tokenizer.save_pretrained(folder / "tokenizer")
    AmusedScheduler(mask_token_id=8255, masking_schedule="cosine").save_pretrained(folder / "scheduler")
    write_json(folder / "model_index.json", {
        "_class_name": "AmusedPipeline", "scheduler": ["diffusers", "AmusedScheduler"],
        "text_encoder": ["transformers", "CLIPTextModelWithProjection"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "transformer": ["diffusers", "UVit2DModel"], "vqvae": ["diffusers", "VQModel"]})


def _status_mb(key: str) -> float:
    """A line of /proc/self/status in MB (VmRSS: resident now; VmHWM: its peak since the last reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def settle_memory(models, device: str) -> float:
    """Make the loaded weights resident, reset the peak, and return the memory held now (MB).

    Weights loaded from safetensors may be memory-mapped and only paged in when first used, and loading has its
    own transient peak: without this, the first would count as the work's and the second could hide it."""
    import torch
    for model in models:
        for t in list(model.parameters()) + list(model.buffers()):
            t.float().sum().item()  # touch every page
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated() / 2**20
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the resident size (Linux >= 4.0)
    return _status_mb("VmRSS")


def peak_mb(device: str) -> float:
    import torch
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return _status_mb("VmHWM")


def one(folder: Path, op: str, dtype: str, device: str) -> dict:
    """Run one command's work in this process; returns its working memory (MB above the loaded models)."""
    import numpy as np

    from styledrop import adapters
    from styledrop.device import DTYPES
    from styledrop.muse.base import MuseBase
    from styledrop.muse.sampler import SampleConfig, generate, guided_logits_fn
    from styledrop.restyle import RestyleConfig, restyle
    from styledrop.train import TrainConfig, train_adapter
    base = MuseBase.load(folder, device=device, dtype=DTYPES[dtype])
    rng = np.random.default_rng(0)
    pictures = [rng.integers(0, 255, (base.image_size, base.image_size, 3), dtype=np.uint8) for _ in range(31)]
    cfg = adapters.AdapterConfig("lora", 16)
    loaded = settle_memory([base.transformer, base.vq, base.text_encoder], device)
    t = time.time()
    if op in ("train1", "train30", "feedback_round2"):
        n = {"train1": 1, "train30": 30, "feedback_round2": 31}[op]  # round 2: the reference + 30 kept pictures
        train_adapter(base, pictures[:n], "a picture in [v] style", cfg, TrainConfig(steps=2, batch=1, lr=4e-4))
    if op in ("sample16", "feedback_round2"):  # round 2's candidates are sampled 16 at a time, as here
        theta = adapters.build(cfg, base.transformer, base)
        with adapters.attached(theta, base.transformer):
            generate(base, ["a cat in [v] style"] * 16, SampleConfig(steps=2), logits_fn_for=lambda ps:
                     guided_logits_fn(base, ps, lambda_b=5.0, adapter=theta, lambda_a=2.0))
    if op == "restyle16":
        restyle(base, pictures[:1] * 16, ["a picture"] * 16, SampleConfig(steps=2), RestyleConfig(), None, 0.0, 5.0)
    return {"work_mb": round(peak_mb(device) - loaded, 1), "loaded_mb": round(loaded, 1),
            "seconds": round(time.time() - t, 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512], choices=(256, 512))
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--ops", nargs="+", default=list(OPS), choices=OPS)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--g-hidden", type=int, default=256, help="G's width (amused: 1024)")
    ap.add_argument("--g-layers", type=int, default=2, help="G's layers (amused: 22)")
    ap.add_argument("--work", type=Path, default=Path("runs/memory"))
    ap.add_argument("--one", nargs=3, metavar=("OP", "SIZE", "DTYPE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        op, size, dtype = args.one
        print(json.dumps(one(args.work / f"stand-in-{size}", op, dtype, args.device)))
        return
    rows = []
    for size in args.sizes:
        folder = args.work / f"stand-in-{size}"
        if not (folder / "model_index.json").is_file():
            build(folder, size, args.g_hidden, args.g_layers)
        for dtype in args.dtypes:
            for op in args.ops:  # each in a fresh process, so one peak cannot hide behind another
                r = subprocess.run([sys.executable, __file__, "--one", op, str(size), dtype, "--work", str(args.work),
                                    "--device", args.device], capture_output=True, text=True)
                if r.returncode:
                    raise SystemExit(f"{op} at {size} px in {dtype} failed:\n{r.stderr[-2000:]}")
                row = {"op": op, "size": size, "dtype": dtype} | json.loads(r.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(f"{op:16s} {size} px {dtype:9s} work {row['work_mb']:8.0f} MB (models {row['loaded_mb']:6.0f} MB)"
                      f" {row['seconds']:6.1f} s", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
