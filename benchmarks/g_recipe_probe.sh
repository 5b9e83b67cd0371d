#!/usr/bin/env bash
# One G recipe probe for the hard regime: fine-tune G, then the in-context probe and one-image StyleDrop on the
# held-out styles, side by side with the same measurements of the starting base (made once per base).
#   bash benchmarks/g_recipe_probe.sh NAME BASE TOKENS [g_finetune.py flags...]
#   e.g. bash benchmarks/g_recipe_probe.sh ring25 runs/base_v3 runs/pretrain_v3/tokens.safetensors \
#            --steps 1500 --extra open_space --ring 0.25
# Writes runs/probes/NAME/{finetune.log,probe.json,heldout.json} and prints one summary line per run.
set -euo pipefail
cd "$(dirname "$0")/.."
NAME="$1"; BASE="$2"; TOKENS="$3"; shift 3
OUT="runs/probes/$NAME"; START="runs/probes/start-$(basename "$BASE")"
mkdir -p "$OUT" "$START"
measure() {  # $1 base, $2 folder: the in-context probe (held-out styles) and one-image StyleDrop (hard regime)
    [ -s "$2/probe.json" ] || python benchmarks/context_probe.py --base "$1" --styles pop_art lava camouflage rainbow \
        --json | tail -1 > "$2/probe.json"
    [ -s "$2/heldout.json" ] || python benchmarks/heldout_styles.py --base "$1" --regime hard --out "$2/heldout" \
        --json | tail -1 > "$2/heldout.json"
}
measure "$BASE" "$START"
[ -d "$OUT/base" ] || python benchmarks/g_finetune.py --base "$BASE" --tokens "$TOKENS" --out "$OUT/base" "$@" \
    > "$OUT/finetune.log" 2>&1
measure "$OUT/base" "$OUT"
python - "$START" "$OUT" <<'PY'
import json, sys
for folder in sys.argv[1:]:
    probe = json.load(open(f"{folder}/probe.json"))["styles"]
    held = json.load(open(f"{folder}/heldout.json"))["summary"]["hard"]
    ctx = [probe[s]["context_content_only"] for s in probe]
    print(f"{folder:32s} probe content {sum(c['content_acc'] for c in ctx) / len(ctx):.2f} "
          f"style {sum(c['style_acc'] for c in ctx) / len(ctx):.2f} | StyleDrop hard style {held['style_acc']:.2f} "
          f"content {held['content_acc']:.2f} leak {held['leakage']:.2f} | base alone style "
          f"{held['base_style_acc']:.2f} content {held['base_content_acc']:.2f}")
PY
