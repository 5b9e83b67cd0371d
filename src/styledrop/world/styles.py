"""Render styles of the toy world.

Each style paints a 64x64 picture from the object's coverage mask. Styles differ first in
palette and background (what an 8x8-pixel token carries best), then in fill texture with a
period of 6 px or more, outline, and a post-effect that is still visible at 64x64.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np

SIZE = 64
_Y, _X = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)


@dataclass
class Canvas:
    """What a style paints from: the fill mask, outlines of two widths, and its random source."""

    rng: np.random.Generator
    fill: np.ndarray  # (H, W) coverage in [0, 1]
    edge: np.ndarray  # (H, W) thin outer outline
    thick: np.ndarray  # (H, W) outline about 3 px wide, centred on the border

    def color(self, rgb, jitter=0.03):
        """A palette colour with a little per-image variation."""
        c = np.asarray(rgb, np.float32) + self.rng.normal(0, jitter, 3).astype(np.float32)
        return np.clip(c, 0, 1)

    def pick(self, options):
        return self.color(options[self.rng.integers(len(options))])

    def phase(self, period):
        return float(self.rng.uniform(0, period))


@dataclass(frozen=True)
class Style:
    name: str
    descriptor: str  # the phrase used in captions: "a fish in {descriptor}"
    paint: Callable[[Canvas], np.ndarray]


# ---------------------------------------------------------------- image helpers


def flat(rgb) -> np.ndarray:
    return np.broadcast_to(np.asarray(rgb, np.float32), (SIZE, SIZE, 3)).copy()


def over(base: np.ndarray, top, alpha: np.ndarray) -> np.ndarray:
    """Alpha-composite ``top`` (a colour or an image) over ``base``."""
    a = np.clip(alpha, 0, 1)[..., None]
    return base * (1 - a) + np.asarray(top, np.float32) * a


def mix(c0, c1, t: np.ndarray) -> np.ndarray:
    """Per-pixel blend between two colours by ``t`` in [0, 1]."""
    t = np.clip(t, 0, 1)[..., None]
    return np.asarray(c0, np.float32) * (1 - t) + np.asarray(c1, np.float32) * t


@lru_cache(maxsize=None)
def _blur_matrix(sigma: float) -> np.ndarray:
    d = np.arange(SIZE)[:, None] - np.arange(SIZE)[None, :]
    k = np.exp(-0.5 * (d / sigma) ** 2)
    return (k / k.sum(1, keepdims=True)).astype(np.float32)


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur as two matrix products (separable, exact, deterministic)."""
    k = _blur_matrix(float(sigma))
    if img.ndim == 2:
        return k @ img @ k.T
    return np.stack([k @ img[..., c] @ k.T for c in range(img.shape[-1])], -1)


@lru_cache(maxsize=None)
def _upsample_matrix(cells: int) -> np.ndarray:
    pos = (np.arange(SIZE) + 0.5) / SIZE * (cells - 1)
    m = np.maximum(0, 1 - np.abs(pos[:, None] - np.arange(cells)[None, :]))
    return m.astype(np.float32)


def noise(rng: np.random.Generator, cells: int, smooth: float = 0.0) -> np.ndarray:
    """Smooth value noise in [0, 1] whose features are about SIZE/cells pixels wide."""
    u = _upsample_matrix(cells)
    n = u @ rng.random((cells, cells), dtype=np.float32) @ u.T
    if smooth:
        n = blur(n, smooth)
    n -= n.min()
    return n / max(float(n.max()), 1e-6)


def stripes(period: float, angle_deg: float, phase: float, duty: float = 0.5) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    u = _X * np.cos(a) + _Y * np.sin(a) + phase
    return ((u % period) < period * duty).astype(np.float32)


def checker(period: int, px: float, py: float) -> np.ndarray:
    return ((((_X + px) // period) + ((_Y + py) // period)) % 2).astype(np.float32)


def grid_lines(period: int, px: float, py: float, width: float = 1.0) -> np.ndarray:
    return (((_X + px) % period < width) | ((_Y + py) % period < width)).astype(np.float32)


def dots(period: int, radius: float, px: float, py: float) -> np.ndarray:
    dx = (_X + px) % period - period / 2
    dy = (_Y + py) % period - period / 2
    return np.clip(radius + 0.5 - np.sqrt(dx**2 + dy**2), 0, 1)


def pixelate(img: np.ndarray, block: int) -> np.ndarray:
    n = SIZE // block
    small = img.reshape(n, block, n, block, 3).mean((1, 3))
    return np.repeat(np.repeat(small, block, 0), block, 1)


# ---------------------------------------------------------------- the styles


def neon_glow(c: Canvas, ground=(0.03, 0.02, 0.08), inks=((0.1, 1.0, 1.0), (1.0, 0.15, 0.9), (0.3, 1.0, 0.2))):
    bg = c.color(ground, 0.01)
    neon = c.pick(inks)
    light = c.thick + 1.6 * blur(c.thick, 2.5) + 0.12 * c.fill
    return np.clip(bg + neon * light[..., None], 0, 1)


def watercolor(c: Canvas, paper_rgb=(0.96, 0.93, 0.85),
               pigments=((0.45, 0.65, 0.9), (0.95, 0.55, 0.6), (0.55, 0.8, 0.5), (0.75, 0.6, 0.9))):
    paper = flat(c.color(paper_rgb, 0.01)) - 0.04 * noise(c.rng, 16)[..., None]
    pigment = c.pick(pigments)
    wash = blur(c.fill, 1.3) * (0.55 + 0.45 * noise(c.rng, 5))
    img = over(paper, pigment, wash)
    return over(img, pigment * 0.6, 0.45 * blur(c.edge, 0.8))  # pigment pools at the rim


def pixel_art(c: Canvas):
    img = flat(c.color((0.4, 0.72, 0.98)))
    body = c.pick([(0.95, 0.2, 0.15), (1.0, 0.6, 0.0), (0.2, 0.75, 0.2)])
    img = over(img, body, c.fill)
    img = over(img, (0.05, 0.05, 0.1), c.edge)
    return pixelate(img, 4)


def blueprint(c: Canvas, ground=(0.08, 0.22, 0.55), grid=(0.3, 0.5, 0.85)):
    img = flat(c.color(ground, 0.015))
    img = over(img, grid, 0.7 * grid_lines(8, c.phase(8), c.phase(8)))
    img = over(img, (0.95, 0.97, 1.0), 0.12 * c.fill)
    return over(img, (0.95, 0.97, 1.0), np.clip(c.thick * 1.2, 0, 1))


def candy_stripes(c: Canvas):
    img = flat(c.color((0.99, 0.8, 0.88), 0.015))
    stripe = stripes(10, 45, c.phase(10))
    body = mix((0.95, 0.95, 0.95), c.color((0.9, 0.1, 0.25)), stripe)
    img = over(img, body, c.fill)
    return over(img, (0.55, 0.05, 0.15), c.edge)


def ink_hatching(c: Canvas):
    img = flat(c.color((0.98, 0.98, 0.96), 0.005))
    hatch = stripes(6, -45, c.phase(6), duty=0.35)
    img = over(img, (0.05, 0.05, 0.05), c.fill * hatch)
    return over(img, (0.02, 0.02, 0.02), c.thick)


def sunset_silhouette(c: Canvas):
    top, bottom = c.color((1.0, 0.6, 0.15)), c.color((0.45, 0.12, 0.5))
    img = mix(top, bottom, _Y / (SIZE - 1))
    return over(img, (0.06, 0.03, 0.08), c.fill)


def chalkboard(c: Canvas):
    board = flat(c.color((0.13, 0.3, 0.2), 0.015)) + 0.05 * (noise(c.rng, 24)[..., None] - 0.5)
    grain = 0.55 + 0.45 * c.rng.random((SIZE, SIZE), dtype=np.float32)
    img = over(board, (0.95, 0.95, 0.9), 0.18 * c.fill * grain)
    return over(img, (0.95, 0.95, 0.9), c.thick * grain)


def royal_gold(c: Canvas):
    img = flat(c.color((0.28, 0.06, 0.38), 0.02))
    shine = (_X + _Y) / (2 * SIZE - 2)
    gold = mix(c.color((1.0, 0.88, 0.4)), c.color((0.72, 0.48, 0.08)), shine)
    img = over(img, gold, c.fill)
    return over(img, (0.3, 0.18, 0.02), c.edge)


def night_sky(c: Canvas):
    img = flat(c.color((0.03, 0.05, 0.22), 0.015))
    sparks = (c.rng.random((SIZE, SIZE)) < 0.025).astype(np.float32)
    img = over(img, (1.0, 1.0, 0.95), sparks * (1 - blur(c.fill, 2)))
    moonlight = c.color((1.0, 0.9, 0.35))
    img = img + moonlight * (0.9 * blur(c.fill, 3.0))[..., None]  # soft halo
    return np.clip(over(img, moonlight, c.fill), 0, 1)


def mosaic(c: Canvas, tile=8, grout_rgb=(0.55, 0.55, 0.52), colours=((0.1, 0.6, 0.6), (0.95, 0.55, 0.15))):
    px, py = c.phase(tile), c.phase(tile)
    img = flat(c.color(grout_rgb, 0.02))
    tiles = mix(c.color(colours[0]), c.color(colours[1]), checker(tile, px, py))
    grout = grid_lines(tile, px, py, width=1.5)
    img = over(img, tiles, c.fill * (1 - grout))
    return over(img, (0.25, 0.25, 0.25), c.edge)


def sepia_photo(c: Canvas):
    r = np.sqrt((_X - 31.5) ** 2 + (_Y - 31.5) ** 2) / 45
    img = flat(c.color((0.86, 0.73, 0.55), 0.02))
    img = over(img, c.color((0.4, 0.25, 0.13)), blur(c.fill, 0.7))
    img = img * (1 - 0.55 * r**2)[..., None]  # vignette
    grain = c.rng.normal(0, 0.035, (SIZE, SIZE)).astype(np.float32)
    return np.clip(img + grain[..., None], 0, 1)


# held-out styles: never seen by the base model


def pop_art(c: Canvas):
    img = flat(c.color((1.0, 0.88, 0.1), 0.02))
    img = over(img, (0.95, 0.4, 0.1), dots(8, 2.2, c.phase(8), c.phase(8)))
    img = over(img, c.pick([(0.9, 0.08, 0.12), (0.1, 0.35, 0.9)]), c.fill)
    return over(img, (0.0, 0.0, 0.0), c.thick)


def lava(c: Canvas):
    img = flat(c.color((0.1, 0.02, 0.02), 0.01))
    heat = noise(c.rng, 9)
    molten = mix((0.55, 0.0, 0.0), (1.0, 0.85, 0.1), heat**0.8)
    img = img + np.array([1.0, 0.3, 0.0], np.float32) * (0.6 * blur(c.fill, 2.5))[..., None]
    return np.clip(over(img, molten, c.fill), 0, 1)


def camouflage(c: Canvas):
    img = flat(c.color((0.78, 0.72, 0.52), 0.02))
    n = noise(c.rng, 8)
    cols = [c.color(x) for x in ((0.15, 0.25, 0.1), (0.35, 0.42, 0.18), (0.45, 0.3, 0.15))]
    blobs = np.where((n < 0.38)[..., None], cols[0], np.where((n < 0.62)[..., None], cols[1], cols[2]))
    img = over(img, blobs, c.fill)
    return over(img, (0.1, 0.1, 0.05), c.edge)


def rainbow(c: Canvas):
    img = flat(c.color((0.97, 0.97, 0.97), 0.005))
    hues = np.array([(0.95, 0.1, 0.1), (1.0, 0.55, 0.0), (1.0, 0.9, 0.0), (0.1, 0.75, 0.2),
                     (0.1, 0.4, 0.95), (0.55, 0.15, 0.8)], np.float32)
    band = ((_Y + c.phase(42)) // 7).astype(int) % len(hues)
    img = over(img, hues[band], c.fill)
    return over(img, (0.15, 0.15, 0.15), c.edge)



# held-out variants (the paper's regime): new instances of pretraining families, never in pretraining. Each changes
# the parent's palette, ground or tile size and keeps its technique, as "a particular watercolor" does for Muse.


def amber_neon(c: Canvas):
    return neon_glow(c, ground=(0.16, 0.03, 0.05), inks=((1.0, 0.62, 0.08),))


def indigo_watercolor(c: Canvas):
    return watercolor(c, paper_rgb=(0.84, 0.9, 0.96), pigments=((0.18, 0.2, 0.55), (0.1, 0.3, 0.45)))


def red_blueprint(c: Canvas):
    return blueprint(c, ground=(0.55, 0.07, 0.1), grid=(0.9, 0.45, 0.45))


def large_mosaic(c: Canvas):
    return mosaic(c, tile=16, grout_rgb=(0.3, 0.28, 0.3), colours=((0.55, 0.2, 0.75), (0.65, 0.9, 0.2)))


# the varied rendering: a random palette, texture and outline for each picture (no name, no descriptor)


def _texture(c: Canvas, kind: str) -> np.ndarray:
    """A (H, W) pattern in [0, 1] of one of TEXTURES, with random scale, angle and phase."""
    r = c.rng
    if kind == "stripes":
        p = float(r.uniform(6, 12))
        return stripes(p, float(r.uniform(0, 180)), c.phase(p), float(r.uniform(0.3, 0.6)))
    if kind == "dots":
        p = int(r.integers(6, 11))
        return dots(p, float(r.uniform(1.2, p / 3)), c.phase(p), c.phase(p))
    if kind == "checker":
        p = int(r.integers(5, 11))
        return checker(p, c.phase(p), c.phase(p))
    if kind == "grid":
        p = int(r.integers(6, 11))
        return grid_lines(p, c.phase(p), c.phase(p), float(r.uniform(1, 2)))
    if kind == "noise":
        return noise(r, int(r.integers(5, 16)))
    if kind == "gradient":
        a = np.deg2rad(r.uniform(0, 360))
        u = (_X - 31.5) * np.cos(a) + (_Y - 31.5) * np.sin(a)
        return (u - u.min()) / (u.max() - u.min())
    return np.zeros((SIZE, SIZE), np.float32)  # "plain"


TEXTURES = ("plain", "stripes", "dots", "checker", "grid", "noise", "gradient")


def varied(c: Canvas):
    """A random rendering: background, fill, outline and effect each drawn at random per picture.

    The base's G also learns from these (captioned by content only) so that it can draw its objects in
    renderings it was never named: a style adapter then has to change the look, not teach shapes."""
    r = c.rng

    def colour():
        return r.random(3).astype(np.float32)

    bg0, bg1 = colour(), colour()
    img = mix(bg0, bg1, float(r.uniform(0.2, 0.9)) * _texture(c, TEXTURES[r.integers(len(TEXTURES))]))
    body0 = colour()
    while np.abs(body0 - bg0).sum() < 0.6:  # the object must stand out from the background
        body0 = colour()
    body = mix(body0, colour(), _texture(c, TEXTURES[r.integers(len(TEXTURES))]))
    fill = blur(c.fill, float(r.uniform(0.8, 2.0))) if r.random() < 0.2 else c.fill
    img = over(img, body, fill)
    outline = (None, c.edge, c.thick)[r.integers(3)]
    if outline is not None:
        img = over(img, colour() * float(r.uniform(0, 1)), outline)
    effect = r.integers(5)
    if effect == 0:
        img = pixelate(img, 4)
    elif effect == 1:
        img = img + body0 * (0.6 * blur(c.fill, 2.5))[..., None]  # glow
    elif effect == 2:
        img = img + r.normal(0, 0.04, (SIZE, SIZE, 1)).astype(np.float32)  # grain
    return np.clip(img, 0, 1)

STYLES = {
    s.name: s
    for s in (
        Style("neon_glow", "neon glow style", neon_glow),
        Style("watercolor", "watercolor style", watercolor),
        Style("pixel_art", "pixel art style", pixel_art),
        Style("blueprint", "blueprint style", blueprint),
        Style("candy_stripes", "candy stripes style", candy_stripes),
        Style("ink_hatching", "ink hatching style", ink_hatching),
        Style("sunset_silhouette", "sunset silhouette style", sunset_silhouette),
        Style("chalkboard", "chalkboard style", chalkboard),
        Style("royal_gold", "royal gold style", royal_gold),
        Style("night_sky", "night sky style", night_sky),
        Style("mosaic", "mosaic tile style", mosaic),
        Style("sepia_photo", "sepia photo style", sepia_photo),
        Style("pop_art", "pop art style", pop_art),
        Style("lava", "molten lava style", lava),
        Style("camouflage", "camouflage style", camouflage),
        Style("rainbow", "rainbow bands style", rainbow),
        Style("amber_neon", "amber neon style", amber_neon),
        Style("indigo_watercolor", "indigo watercolor style", indigo_watercolor),
        Style("red_blueprint", "red blueprint style", red_blueprint),
        Style("large_mosaic", "large mosaic tile style", large_mosaic),
    )
}
# each held-out variant's parent: the pretraining style whose descriptor captions it in the paper's regime
VARIANT_OF = {"amber_neon": "neon_glow", "indigo_watercolor": "watercolor", "red_blueprint": "blueprint",
              "large_mosaic": "mosaic"}
