# One feedback round on each hard-regime style, from one random-pose house reference: round 1 against round 2,
# read by the shipped oracle and by the space-aware judge on the same pictures (style / content / leakage).
#   bash benchmarks/feedback_hard.sh [oracle|clip] [STYLE ...]      (default: oracle, the four held-out styles)
#   PLACEMENT=layers+up bash benchmarks/feedback_hard.sh ...        (adapters in G's up block too)
# About 10 minutes a style on 2 cores. Round 2 trains for the default steps, which grow with its pictures.
set -e
SEL=${1:-oracle}; shift || true
STYLES=${*:-pop_art lava camouflage rainbow}
for S in $STYLES; do
  D=runs/feedback_hard/$S-$SEL-${PLACEMENT:-layers}; mkdir -p $D
  python -c "
from styledrop import world; from PIL import Image
Image.fromarray(world.sample(0, 0, [('house', '$S')], 'random').image).save('$D/ref.png')"
  DESC="$(python -c "from styledrop import world; print(world.reference_phrase('$S'))")"
  styledrop train --image $D/ref.png --style "$DESC" --content "a house" --placement ${PLACEMENT:-layers} \
    --out $D/r1.safetensors 2>/dev/null
  styledrop feedback --adapter $D/r1.safetensors --out $D/r2.safetensors --select $SEL --seed 2 2>/dev/null
  for r in 1 2; do
    echo "$S $SEL round $r $(styledrop evaluate style --adapter $D/r$r.safetensors --reference $D/ref.png \
      --second-oracle space --json 2>/dev/null | python -c "
import json, sys
a = json.load(sys.stdin)['adapter']; b = a['second']
print('shipped oracle %.2f / %.2f / %.2f, space-aware judge %.2f / %.2f / %.2f' % (
    a['style_acc'], a['content_acc'], a['leakage'], b['style_acc'], b['content_acc'], b['leakage']))")"
  done
done
