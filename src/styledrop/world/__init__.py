"""The toy world: seeded, captioned 64x64 pictures of objects in named render styles.

Split (fixed; see docs/experiments.md "The world and the oracles"):
- held-out styles and held-out contents are never used to pretrain the base model; they
  test StyleDrop on a style / subject the base never saw;
- among the remaining (content, style) pairs, those with (content index + style index) % 12
  == 0 are held out too, to test whether the base composes a seen style with a seen content;
- held-out variants (the paper's regime) are new instances of pretraining styles (another palette, ground or
  tile size), never used in pretraining: the base alone draws their parent, and StyleDrop must bring the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from . import space
from .shapes import SHAPES
from .styles import SIZE, STYLES, VARIANT_OF, Canvas, varied

CONTENTS: list[str] = list(SHAPES)
STYLE_NAMES: list[str] = list(STYLES)
HELDOUT_CONTENTS = ("umbrella", "rocket", "key")
HELDOUT_STYLES = ("pop_art", "lava", "camouflage", "rainbow")  # the hard regime: looks G has never drawn
HELDOUT_VARIANTS = tuple(VARIANT_OF)  # the paper's regime: new instances of styles G knows
PRETRAIN_CONTENTS = [c for c in CONTENTS if c not in HELDOUT_CONTENTS]
PRETRAIN_STYLES = [s for s in STYLE_NAMES if s not in HELDOUT_STYLES and s not in VARIANT_OF]
VARIED = "varied"  # not a style: a random rendering per picture (styles.varied), captioned by content only
SPACE = "space"  # not a style: a look drawn per picture from the style space (space.py), named in its caption
_PAINTERS = {name: s.paint for name, s in STYLES.items()} | {VARIED: varied}
SPLITS = ("pretrain", "heldout_pair", "heldout_style", "heldout_content", "heldout_both", "heldout_variant")

POSES = ("random", "centered")  # "centered": upright, unmirrored, within 2 px of the middle (G's pretraining)
_MIRRORED = {"fish", "car", "bird", "cup", "boat", "moon", "umbrella", "key"}  # asymmetric shapes
_SUPERSAMPLE = 4

CAPTION_TEMPLATES = (
    "{a} {content} in {descriptor}",
    "a picture of {a} {content} in {descriptor}",
    "{a} {content} drawn in {descriptor}",
    "an image of {a} {content}, {descriptor}",
)
CONTENT_ONLY_TEMPLATES = ("{a} {content}", "a picture of {a} {content}")
# style-space captions: the look's descriptor ("with red fill, on blue"), or content only one time in four
LOOK_TEMPLATES = ("{a} {content} {look}", "a picture of {a} {content} {look}", None,
                  "an image of {a} {content}, {look}")
STYLE_ONLY_TEMPLATE = "a picture in {descriptor}"


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def caption(content: str, style: str | None, template: int = 0) -> str:
    """Caption of a picture; ``style=None`` gives a content-only caption."""
    if style is None or style == VARIED:
        t = CONTENT_ONLY_TEMPLATES[template % len(CONTENT_ONLY_TEMPLATES)]
        return t.format(a=article(content), content=content)
    t = CAPTION_TEMPLATES[template % len(CAPTION_TEMPLATES)]
    return t.format(a=article(content), content=content, descriptor=STYLES[style].descriptor)


def look_caption(content: str, look: str, template: int = 0) -> str:
    """Caption of a style-space picture whose look has the descriptor ``look``."""
    t = LOOK_TEMPLATES[template % len(LOOK_TEMPLATES)]
    if t is None:
        return caption(content, None, template)
    return t.format(a=article(content), content=content, look=look)


def style_phrase(style: str | None = None, token: str | None = None) -> str:
    """What a style caption puts after the content: "in molten lava style" for a world style, or
    "in [v] style" for a rare token standing for a style the adapter learns from its picture."""
    return f"in {token} style" if token else "in " + STYLES[style].descriptor


def reference_phrase(style: str, token: str | None = None) -> str:
    """What a reference in a world style is captioned with: a held-out variant by its parent's descriptor, as the
    paper captions a new watercolor "in watercolor style"; any other style by its own (or "in TOKEN style")."""
    return style_phrase(VARIANT_OF.get(style, style), token)


def regime(style: str) -> str:
    """Which held-out regime a world style belongs to: "paper" (a variant of a pretraining style), "hard" (a look
    no part of pretraining draws), or "known" (a pretraining style)."""
    return "paper" if style in VARIANT_OF else "hard" if style in HELDOUT_STYLES else "known"


def style_caption(style: str) -> str:
    """A style-only caption, used to ask CLIP "which style is this?"."""
    return STYLE_ONLY_TEMPLATE.format(descriptor=STYLES[style].descriptor)


def split_of(content: str, style: str) -> str:
    hs, hc = style in HELDOUT_STYLES or style in VARIANT_OF, content in HELDOUT_CONTENTS
    if style in (VARIED, SPACE):
        return "heldout_content" if hc else "pretrain"
    if hs and hc:
        return "heldout_both"
    if hs:
        return "heldout_variant" if style in VARIANT_OF else "heldout_style"
    if hc:
        return "heldout_content"
    i, j = PRETRAIN_CONTENTS.index(content), PRETRAIN_STYLES.index(style)
    return "heldout_pair" if (i + j) % 12 == 0 else "pretrain"


def pairs(split: str | None = None) -> list[tuple[str, str]]:
    """All (content, style) pairs, or those of one split, in a fixed order."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return [(c, s) for c in CONTENTS for s in STYLE_NAMES if split is None or split_of(c, s) == split]


def _mask(content: str, rng: np.random.Generator, pose: str = "random") -> np.ndarray:
    """Anti-aliased coverage mask (H, W) of one randomly placed, scaled and rotated object
    (``pose="centered"``: scaled only, upright and unmirrored, near the middle)."""
    parts = SHAPES[content](rng)
    half = rng.uniform(17, 25)  # half-size in pixels
    if pose == "centered":
        cx, cy = SIZE / 2 + rng.uniform(-2, 2, 2)
        rot, flip = 0.0, 1.0
    else:
        cx, cy = rng.uniform(half + 1, SIZE - 1 - half, 2)
        rot = math.radians(rng.uniform(-15, 15))
        flip = -1.0 if content in _MIRRORED and rng.random() < 0.5 else 1.0
    cos, sin, ss = math.cos(rot), math.sin(rot), _SUPERSAMPLE
    img = Image.new("L", (SIZE * ss, SIZE * ss), 0)
    draw = ImageDraw.Draw(img)
    for points, add in parts:
        xy = []
        for x, y in points:
            x *= flip
            xr, yr = x * cos - y * sin, x * sin + y * cos
            xy.append(((cx + xr * half) * ss, (cy + yr * half) * ss))
        draw.polygon(xy, fill=255 if add else 0)
    return img.resize((SIZE, SIZE), Image.Resampling.BOX)


def render(content: str, style: str, rng: np.random.Generator, pose: str = "random",
           look: space.Look | None = None) -> np.ndarray:
    """One (H, W, 3) uint8 picture of ``content`` in ``style``; ``pose`` is one of POSES.
    ``style=SPACE`` paints ``look`` (one of the style space's looks)."""
    if content not in SHAPES:
        raise ValueError(f"unknown content {content!r}; expected one of {', '.join(CONTENTS)}")
    if style not in _PAINTERS and not (style == SPACE and look is not None):
        raise ValueError(f"unknown style {style!r}; expected one of {', '.join(STYLE_NAMES)}")
    if pose not in POSES:
        raise ValueError(f"unknown pose {pose!r}; expected one of {', '.join(POSES)}")
    mask = _mask(content, rng, pose)
    fill = np.asarray(mask, np.float32) / 255
    grow3 = np.asarray(mask.filter(ImageFilter.MaxFilter(3)), np.float32) / 255
    grow5 = np.asarray(mask.filter(ImageFilter.MaxFilter(5)), np.float32) / 255
    shrink = np.asarray(mask.filter(ImageFilter.MinFilter(3)), np.float32) / 255
    canvas = Canvas(rng=rng, fill=fill, edge=grow3 - fill, thick=np.clip(grow5 - shrink, 0, 1))
    rgb = space.paint(canvas, look) if style == SPACE else _PAINTERS[style](canvas)
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


@dataclass(frozen=True)
class Sample:
    image: np.ndarray  # (64, 64, 3) uint8
    content: str
    style: str
    caption: str
    split: str
    look: str | None = None  # the style-space descriptor, for style SPACE


def sample(index: int, seed: int, choices: list[tuple[str, str]], pose: str = "random") -> Sample:
    """The ``index``-th picture of a seeded stream over ``choices`` (content, style) pairs.

    Each picture has its own generator keyed by (seed, index), so any slice of a stream is
    reproducible on its own and the same seed gives byte-identical images.
    """
    rng = np.random.default_rng([seed, index])
    content, style = choices[rng.integers(len(choices))]
    template = int(rng.integers(len(CAPTION_TEMPLATES)))
    if style == SPACE:
        return _look_sample(rng, content, space.draw_look(rng), template, pose)
    image = render(content, style, rng, pose)
    return Sample(image, content, style, caption(content, style, template), split_of(content, style))


def sample_look(index: int, seed: int, choices: list[tuple[str, str]], look: space.Look,
                pose: str = "random") -> Sample:
    """Like ``sample``, but every picture in the one style-space ``look`` (its contents from ``choices``)."""
    rng = np.random.default_rng([seed, index])
    content, _ = choices[rng.integers(len(choices))]
    return _look_sample(rng, content, look, int(rng.integers(len(CAPTION_TEMPLATES))), pose)


def open_look_sample(index: int, seed: int, choices: list[tuple[str, str]], pose: str = "random") -> Sample:
    """Like ``sample`` over style-space pairs, but each look may stand on any ground, held-out styles' ground
    colours included (``space.draw_look(open_grounds=True)``): their primitives, never their looks."""
    rng = np.random.default_rng([seed, index])
    content, _ = choices[rng.integers(len(choices))]
    template = int(rng.integers(len(CAPTION_TEMPLATES)))
    return _look_sample(rng, content, space.draw_look(rng, open_grounds=True), template, pose)


def _look_sample(rng, content: str, look: space.Look, template: int, pose: str) -> Sample:
    image = render(content, SPACE, rng, pose, look)
    return Sample(image, content, SPACE, look_caption(content, look.descriptor, template),
                  split_of(content, SPACE), look.descriptor)


def mixed_sample(index: int, seed: int, choices: list[tuple[str, str]], extra: list[tuple[str, str]],
                 fraction: float, pose: str = "random") -> Sample:
    """Picture ``index`` of a stream in which a ``fraction`` of the pictures, spread evenly, come from
    ``extra`` (e.g. the style space) and the rest from ``choices``."""
    from_extra = int((index + 1) * fraction) > int(index * fraction)
    return sample(index, seed, extra if from_extra else choices, pose)


def choose_pairs(split: str | None = None, style: str | None = None, content: str | None = None):
    """The pairs matching optional filters (``style=SPACE``: each content in the style space);
    raises ValueError naming valid values."""
    if style is not None and style not in STYLES and style != SPACE:
        raise ValueError(f"unknown style {style!r}; expected one of {', '.join(STYLE_NAMES)} or {SPACE}")
    if content is not None and content not in SHAPES:
        raise ValueError(f"unknown content {content!r}; expected one of {', '.join(CONTENTS)}")
    pool = pairs(split) if style != SPACE else [
        (c, SPACE) for c in CONTENTS if split is None or split_of(c, SPACE) == split]
    chosen = [
        (c, s) for c, s in pool
        if (style is None or s == style) and (content is None or c == content)
    ]
    if not chosen:
        raise ValueError(f"no (content, style) pair matches split={split}, style={style}, content={content}")
    return chosen


def batch(n: int, seed: int, choices: list[tuple[str, str]]) -> list[Sample]:
    return [sample(i, seed, choices) for i in range(n)]


def grid(images, cols: int | None = None, pad: int = 2, cell: int | None = None) -> Image.Image:
    """Tile (H, W, 3) uint8 images (a list, or a sequence read one at a time) into one PIL picture, each shrunk
    to at most ``cell`` px a side."""
    cols = cols or max(1, math.ceil(math.sqrt(len(images))))
    rows = math.ceil(len(images) / cols)
    h, w = images[0].shape[:2]
    scale = min(1.0, cell / max(h, w)) if cell else 1.0
    h, w = max(1, round(h * scale)), max(1, round(w * scale))
    out = Image.new("RGB", (cols * (w + pad) + pad, rows * (h + pad) + pad), (255, 255, 255))
    for k in range(len(images)):
        r, c = divmod(k, cols)
        im = Image.fromarray(images[k])
        out.paste(im if im.size == (w, h) else im.resize((w, h), Image.Resampling.LANCZOS),
                  (pad + c * (w + pad), pad + r * (h + pad)))
    return out
