"""The demo's page: one self-contained HTML file (images inlined) showing the reference, the base alone and
StyleDrop side by side for the same prompts and seeds, with the oracle scores and the commands to go further."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
from PIL import Image

from .io import atomic_write
from .report import data_uri

SCALE = 4  # pictures shown at 4x, pixelated: 64 px -> 256 px


def _figure(image: np.ndarray, label: str, alt: str) -> str:
    return (f'<figure><img src="{data_uri(image)}" alt="{html.escape(alt)}" width="{image.shape[1] * SCALE}" '
            f'height="{image.shape[0] * SCALE}"><figcaption>{html.escape(label)}</figcaption></figure>')


def strip(reference: np.ndarray, rows: list[dict], pairs: int = 4, scale: int = 2, gap: int = 6) -> Image.Image:
    """The README's picture: the reference, then ``pairs`` (base alone, StyleDrop) pairs, each at ``scale``x."""
    size = reference.shape[0] * scale
    chosen = rows[::max(1, len(rows) // pairs)][:pairs]
    width = size + gap * 3 + len(chosen) * (2 * size + gap * 3)
    out = Image.new("RGB", (width, size + 2 * gap), (255, 255, 255))
    x = gap

    def paste(image, x):
        out.paste(Image.fromarray(image).resize((size, size), Image.Resampling.NEAREST), (x, gap))

    paste(reference, x)
    x += size + 3 * gap
    for r in chosen:
        paste(r["base"], x)
        paste(r["styledrop"], x + size + gap // 2)
        x += 2 * size + 3 * gap
    return out


def write_demo_page(path: Path, reference: np.ndarray, reference_caption: str, rows: list[dict],
                    scores: dict[str, dict], commands: list[str], regime: str = "") -> None:
    """``rows``: per prompt and seed, {"prompt", "seed", "base": image, "styledrop": image};
    ``scores``: {"base": {...}, "styledrop": {...}} oracle accuracies; ``regime``: which held-out regime the
    reference belongs to, in words (shown under the introduction)."""
    def row(r):
        label = f"{r['prompt']} · seed {r['seed']}"
        return (f'<div class="row">{_figure(r["base"], label, "base alone: " + r["prompt"])}'
                f'{_figure(r["styledrop"], label, "StyleDrop: " + r["prompt"])}</div>')

    lines = "".join(row(r) for r in rows)
    table = "".join(f"<tr><td>{html.escape(name)}</td><td>{s['style_acc']:.2f}</td>"
                    f"<td>{s['content_acc']:.2f}</td></tr>" for name, s in scores.items())
    cmds = "\n".join(html.escape(c) for c in commands)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>styledrop demo</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
img {{ image-rendering: pixelated; display: block; border: 1px solid #ccc; }}
figure {{ margin: 0 1em 1em 0; }} figcaption {{ font-size: 0.85em; max-width: 256px; }}
.pairs {{ display: flex; flex-wrap: wrap; gap: 0 2.5em; }}
.row {{ display: flex; }} .row figcaption::before {{ font-weight: bold; }}
.row figure:first-child figcaption::before {{ content: "base alone: "; }}
.row figure:last-child figcaption::before {{ content: "StyleDrop: "; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 0.3em 0.8em; }}
pre {{ background: #f4f4f4; padding: 1em; overflow-x: auto; }}
</style></head><body>
<h1>styledrop demo</h1>
<p>One reference picture of a style the base never saw → a StyleDrop adapter → new pictures in that style.
Left: the base alone, asked for the same prompt and seed. Right: the base with the adapter.</p>
<p class="regime">{html.escape(regime)}</p>
<h2>Reference</h2>{_figure(reference, reference_caption, "reference")}
<h2>Base alone vs StyleDrop</h2>
<div class="pairs">{lines}</div>
<h2>Oracle scores</h2>
<p>The toy world's classifiers: the fraction of pictures in the reference's style, and of the asked content.</p>
<table><tr><th></th><th>style</th><th>content</th></tr>{table}</table>
<h2>Go further</h2>
<pre>{cmds}</pre>
</body></html>
"""
    atomic_write(path, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
