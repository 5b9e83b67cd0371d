#!/usr/bin/env bash
# Run the README's workflow commands as written, in order, from a clean runs/ (about 10 minutes on 2 cores).
# Skipped: pip install, the UI server, pretraining and the real-aMUSEd lines (they need a folder to fetch).
set -euo pipefail
cd "$(dirname "$0")/.."
python - <<'PY' > runs/readme_commands.txt
import re
text = open("README.md").read()
skip = ("pip install", "styledrop ui", "styledrop pretrain", "amused-256", "accelerate launch", "python -m pytest",
        "my_pictures", "benchmarks/", "huggingface-cli")
for block in re.findall(r"```bash\n(.*?)```", text, re.S):
    for line in block.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not any(s in line for s in skip):
            print(line)
PY
while read -r cmd; do
    echo "+ $cmd"
    eval "$cmd" > /dev/null
done < runs/readme_commands.txt
echo "all README workflow commands ran"
