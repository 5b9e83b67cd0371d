#!/usr/bin/env bash
# Ship a pretrained base: copy runs/base into the package (half precision) and measure it.
set -euo pipefail
cd "$(dirname "$0")/.."
python - <<'PY'
from pathlib import Path
import shutil
from styledrop.muse.base import DEFAULT_BASE, MuseBase
base = MuseBase.load("runs/base")
tmp = DEFAULT_BASE.with_name(".base.tmp")
shutil.rmtree(tmp, ignore_errors=True)
base.save(tmp)
for extra in ("styledrop_pretrain.json",):
    if (Path("runs/base") / extra).is_file():
        shutil.copy(Path("runs/base") / extra, tmp / extra)
shutil.rmtree(DEFAULT_BASE, ignore_errors=True)
tmp.rename(DEFAULT_BASE)
PY
du -sh src/styledrop/assets/base
