#!/usr/bin/env bash
# Remake the README's picture (docs/demo.png) from the demo on the shipped base: run it whenever the base changes.
set -euo pipefail
cd "$(dirname "$0")/.."
styledrop demo --out runs/demo
cp runs/demo/strip.png docs/demo.png
echo "docs/demo.png updated"
