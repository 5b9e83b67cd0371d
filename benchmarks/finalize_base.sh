#!/usr/bin/env bash
# Ship a pretrained base: copy a base folder (default runs/base) into the package (half precision).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC="${1:-runs/base}" python - <<'PY'
import os
from pathlib import Path
import shutil
from styledrop.muse.base import DEFAULT_BASE, MuseBase
src = Path(os.environ["SRC"])
base = MuseBase.load(src)
tmp = DEFAULT_BASE.with_name(".base.tmp")
shutil.rmtree(tmp, ignore_errors=True)
base.save(tmp)
for extra in ("styledrop_pretrain.json", "styledrop.json"):  # its recipe and its tuned defaults
    if (src / extra).is_file():
        shutil.copy(src / extra, tmp / extra)
shutil.rmtree(DEFAULT_BASE, ignore_errors=True)
tmp.rename(DEFAULT_BASE)
PY
du -sh src/styledrop/assets/base
