#!/usr/bin/env bash
# Keep finished pretraining stages in pretrained_stages/ (half precision, with their recipe):
#   bash benchmarks/finalize_stages.sh runs/v2 vqvae [clip]
set -euo pipefail
cd "$(dirname "$0")/.."
SRC="$1"; shift
for part in "$@"; do
SRC="$SRC" PART="$part" python - <<'PY'
import os, shutil
from pathlib import Path
import torch
from styledrop.muse.toy_clip import load_clip
from styledrop.io import read_json
from styledrop.muse.pretrain import STAGE_RECIPE, save_stage
from styledrop.muse.vq import TinyVQModel
src, part = Path(os.environ["SRC"]) / os.environ["PART"], os.environ["PART"]
dst, tmp = Path("pretrained_stages") / part, Path("pretrained_stages") / f".{part}.tmp"
shutil.rmtree(tmp, ignore_errors=True)
model = TinyVQModel.from_pretrained(src) if part == "vqvae" else load_clip(src)
# without its steps: a kept stage is reused as it is, whatever --vq-steps/--clip-steps a later run asks
save_stage(model, tmp, read_json(src / STAGE_RECIPE)["recipe"], steps=None, dtype=torch.float16)
if part == "clip":  # its tokenizer goes with it
    shutil.rmtree(Path("pretrained_stages") / "tokenizer", ignore_errors=True)
    shutil.copytree(src.parent / "tokenizer", Path("pretrained_stages") / "tokenizer")
shutil.rmtree(dst, ignore_errors=True)
tmp.rename(dst)
print(f"{src} -> {dst} (float16)")
PY
done
