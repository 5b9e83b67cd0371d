# Several rounds of feedback from one house reference: does content keep rising?
#   bash benchmarks/feedback_rounds.sh STYLE token|desc [clip|oracle]    (token: caption the style "in [v] style";
#   oracle: the oracles stand in for a person picking pictures)
# Trains round 1, runs `styledrop feedback` three times (rounds 2-4), then evaluates each round's adapter.
set -e
S=$1; M=$2; SEL=${3:-clip}; D=runs/rounds/$S-$M-$SEL; mkdir -p $D
python -c "
from styledrop import world; from PIL import Image
Image.fromarray(world.sample(0,0,[('house','$S')],'random').image).save('$D/ref.png')"
if [ $M = token ]; then A="--token [v]"; else A="--style \"in $(python -c "from styledrop import world; print(world.STYLES['$S'].descriptor)")\""; fi
eval styledrop train --image $D/ref.png $A --content \"a house\" --out $D/r1.safetensors 2>/dev/null
prev=$D/r1.safetensors
for r in 2 3 4; do
  styledrop feedback --adapter $prev --out $D/r$r.safetensors --select $SEL --seed $r 2>/dev/null
  prev=$D/r$r.safetensors
done
for r in 1 2 3 4; do
  echo "$S $M $SEL round $r $(styledrop evaluate style --adapter $D/r$r.safetensors --reference $D/ref.png --json 2>/dev/null | python -c "
import json,sys; r=json.load(sys.stdin)['adapter']; print('style %.2f content %.2f leak %.2f' % (r['style_acc'], r['content_acc'], r['leakage']))")"
done
