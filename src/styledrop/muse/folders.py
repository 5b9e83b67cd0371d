"""What a model folder holds, checked before anything is loaded: which weight files (a hub download may carry fp32
and ``.fp16`` files side by side, or only the ``.fp16`` ones), whether they are whole, and whether its tokenizer is
a real one. Each problem is one message naming the folder and what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError, safe_open

from ..io import UserError

MAX_TOKENS = 100_000  # a model_max_length above this is a placeholder (transformers' 1e30), not a real limit


def variant(folder: Path, stem: str) -> str | None:
    """``"fp16"`` when ``folder`` holds only the fp16 variant of ``stem`` (``diffusion_pytorch_model``,
    ``model``), else None: full-precision files are preferred when both are there."""
    full = (folder / f"{stem}.safetensors").is_file() or (folder / f"{stem}.safetensors.index.json").is_file()
    half = (folder / f"{stem}.fp16.safetensors").is_file() or (folder / f"{stem}.safetensors.index.fp16.json").is_file()
    return "fp16" if half and not full else None


def weight_files(folder: Path, stem: str) -> list[Path]:
    """The safetensors files a model is loaded from (one file, or the shards its index lists): only these, never
    the other variant lying beside them."""
    v = variant(folder, stem)
    single = folder / (f"{stem}.{v}.safetensors" if v else f"{stem}.safetensors")
    index = folder / (f"{stem}.safetensors.index.{v}.json" if v else f"{stem}.safetensors.index.json")
    if single.is_file():
        return [single]
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UserError(f"{index} is not a readable weight index ({e})") from None
        return [folder / s for s in shards]
    raise UserError(f"{folder} has no {stem}.safetensors (nor an .fp16 variant or a sharded index); only "
                    f"safetensors weights are loaded, never pickles")


def check_weights(files: list[Path]) -> None:
    """Refuse a missing, truncated (an interrupted download) or corrupt safetensors file, naming it."""
    for f in files:
        if not f.is_file():
            raise UserError(f"{f} is missing (listed in its folder's weight index)")
        try:
            with safe_open(str(f), "pt"):
                pass
        except (SafetensorError, OSError) as e:
            raise UserError(f"{f} is incomplete or corrupt ({str(e).splitlines()[0][:120]}): was its download "
                            f"interrupted? Fetch it again") from None


def check_tokenizer(tokenizer, folder: Path) -> None:
    """transformers builds a 2-token tokenizer, without a word of complaint, from a folder missing its files."""
    if len(tokenizer) <= 2:
        raise UserError(f"{folder}: the tokenizer has only {len(tokenizer)} tokens; its vocab.json and merges.txt "
                        f"(or tokenizer.json) are missing or empty")
    if not 1 <= tokenizer.model_max_length <= MAX_TOKENS:
        raise UserError(f"{folder}: the tokenizer's model_max_length is {tokenizer.model_max_length}, not a real "
                        f"prompt length (CLIP's is 77); set it in tokenizer_config.json")
