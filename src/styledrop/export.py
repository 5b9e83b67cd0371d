"""``styledrop export --format peft``: a LoRA adapter as a PEFT folder that ``PeftModel.from_pretrained`` loads.

The folder is written by peft itself (``get_peft_model`` on a copy of G, our low-rank matrices
copied in, ``save_pretrained``), so its keys and config are whatever the installed peft expects.
The bottleneck adapters cannot go this way: they add ``W_up·GELU(W_down·h)`` after a whole block,
a non-linear function of the block's output, while a PEFT LoRA is a linear low-rank change
``W + B·A`` inside one Linear layer. No LoRA computes the same function, so we refuse instead of
exporting something that draws differently.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from pathlib import Path

from .io import UserError
from .lora import target_paths

FORMATS = ("peft",)
WHY_NOT_BOTTLENECK = (
    "only LoRA adapters export to PEFT: a {kind} adapter adds W_up·GELU(W_down·h) after whole blocks, a non-linear "
    "function that no LoRA (a linear W + B·A inside one layer) can express, so an export would draw differently. "
    "Train with --adapter lora to get an exportable adapter")


def export_peft(adapter, transformer, out: Path) -> Path:
    """Write ``out`` (a new folder: adapter_config.json + adapter_model.safetensors) all at once."""
    from peft import LoraConfig, get_peft_model
    if adapter.cfg.kind != "lora":
        raise UserError(WHY_NOT_BOTTLENECK.format(kind=adapter.cfg.kind))
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} exists and is not empty; give a new folder")
    model = copy.deepcopy(transformer)  # peft edits the model it wraps; G stays as it was
    config = LoraConfig(r=adapter.cfg.rank, lora_alpha=adapter.cfg.rank, lora_dropout=0.0,
                        target_modules=target_paths(model))
    wrapped = get_peft_model(model, config)
    for path in adapter.paths:
        key, layer = path.replace(".", "__"), wrapped.base_model.model.get_submodule(path)
        layer.lora_A["default"].weight.data.copy_(adapter.A[key].data)
        layer.lora_B["default"].weight.data.copy_(adapter.B[key].data)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        wrapped.save_pretrained(stage)
        if out.exists():
            out.rmdir()
        stage.rename(out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return out
