"""The style space: a compositional rendering whose factors are drawn per picture and named in its caption.

A *look* is fill colour(s) and texture, outline width and colour, background colour(s) and texture, and a
post-effect. Its descriptor is a phrase built from the factors, and parsed back by ``parse_look``:

    "with red and white dotted fill, a thick black outline, on yellow with orange stripes, pixelated"

The base's encoders (and G) learn from these so that a style is new only to an adapter, as in Muse, whose
VQ and CLIP have seen every kind of picture. Looks too close to a held-out style are never drawn and
refused when asked for (``too_close``), so the held-out test stays honest: the adapter must still learn
those styles from their picture.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .styles import SIZE, Canvas, _texture, blur, mix, over, pixelate

COLOURS = {
    "red": (0.9, 0.12, 0.12), "orange": (1.0, 0.55, 0.05), "yellow": (1.0, 0.9, 0.1),
    "green": (0.15, 0.7, 0.2), "teal": (0.0, 0.55, 0.55), "blue": (0.15, 0.3, 0.9),
    "navy": (0.05, 0.08, 0.35), "purple": (0.55, 0.2, 0.75), "pink": (1.0, 0.55, 0.75),
    "brown": (0.5, 0.3, 0.12), "black": (0.05, 0.05, 0.05), "grey": (0.55, 0.55, 0.55),
    "white": (0.97, 0.97, 0.97), "cream": (0.96, 0.92, 0.8),
}
# texture -> (adjective for a fill, noun for a background)
TEXTURES = {
    "plain": ("", ""), "striped": ("striped", "stripes"), "dotted": ("dotted", "dots"),
    "checkered": ("checkered", "checks"), "gridded": ("gridded", "grid lines"), "mottled": ("mottled", "mottling"),
    "shaded": ("shaded", "shading"),
}
OUTLINES = ("none", "thin", "thick")
EFFECTS = ("none", "pixelated", "glowing", "grainy", "blurred")
WARM = {"red", "orange", "yellow"}
# the grounds of the held-out styles (pop art's yellow, lava's black-red, rainbow's white) are never a
# style-space ground: the style oracle calls 37-94% of looks on them a held-out style (docs/experiments.md)
HELDOUT_GROUNDS = {"yellow": "pop_art", "orange": "pop_art", "white": "rainbow", "black": "lava", "brown": "lava"}


@dataclass(frozen=True)
class Look:
    fill: str
    fill_texture: str = "plain"
    fill2: str = "white"  # the texture's second colour (unused when plain)
    outline: str = "none"
    outline_colour: str = "black"
    background: str = "white"
    background_texture: str = "plain"
    background2: str = "grey"
    effect: str = "none"

    def __post_init__(self):
        for name in ("fill", "fill2", "outline_colour", "background", "background2"):
            _check(name, getattr(self, name), COLOURS)
        _check("fill texture", self.fill_texture, TEXTURES)
        _check("background texture", self.background_texture, TEXTURES)
        _check("outline", self.outline, OUTLINES)
        _check("effect", self.effect, EFFECTS)

    @property
    def descriptor(self) -> str:
        """The phrase that follows the content in a caption ("a cat with ...")."""
        fill = self.fill if self.fill_texture == "plain" else \
            f"{self.fill} and {self.fill2} {TEXTURES[self.fill_texture][0]}"
        out = f"with {fill} fill"
        if self.outline != "none":
            out += f", a {self.outline} {self.outline_colour} outline"
        out += f", on {self.background}"
        if self.background_texture != "plain":
            out += f" with {self.background2} {TEXTURES[self.background_texture][1]}"
        return out + ("" if self.effect == "none" else f", {self.effect}")


def _check(what: str, value: str, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}")


def too_close(look: Look, open_grounds: bool = False) -> str | None:
    """The held-out style a look would imitate, or None. Rules written against each held-out style's
    own factors (styles.py); their effect is measured by the style oracle (``evaluate space``).

    ``open_grounds``: every colour may be a ground (the held-out styles' primitives are not held out, only their
    looks), and the rules name those looks' combinations on such grounds instead."""
    grounds = {look.background} | ({look.background2} if look.background_texture != "plain" else set())
    if not open_grounds:
        for colour in sorted(grounds & set(HELDOUT_GROUNDS)):
            return HELDOUT_GROUNDS[colour]  # the ground of a held-out style
    elif grounds & {"yellow", "orange"} and (look.background_texture == "dotted" or look.outline == "thick"):
        return "pop_art"  # halftone dots, or a thick outline, on a yellow-orange ground
    elif "white" in grounds and look.fill_texture == "striped":
        return "rainbow"  # banded fill on white
    elif grounds & {"black", "brown"} and (look.fill in WARM or look.effect == "glowing"):
        return "lava"  # a hot fill or a glow on a dark ground
    if look.fill_texture == "mottled" and {look.fill, look.fill2} <= WARM | {"black", "brown"}:
        return "lava"  # molten red-orange-yellow noise
    if look.effect == "glowing" and look.fill in WARM and look.background == "navy":
        return "lava"  # a hot glow on a dark ground
    if look.fill_texture == "mottled" and {look.fill, look.fill2} <= {"green", "brown", "black", "cream", "grey"}:
        return "camouflage"  # olive and brown blobs
    if look.background == "cream" and look.fill in ("green", "brown") and look.fill_texture != "plain":
        return "camouflage"  # patterned olive or brown on a khaki-like ground
    return None


def _far(a: str, b: str) -> bool:
    return float(np.abs(np.subtract(COLOURS[a], COLOURS[b])).sum()) >= 0.6


def draw_look(rng: np.random.Generator, open_grounds: bool = False) -> Look:
    """A random look, never one ``too_close`` to a held-out style; the fill stands out from the ground.
    ``open_grounds``: on any colour, held-out styles' grounds included (see ``too_close``)."""
    names, tex = list(COLOURS), list(TEXTURES)

    def colour(*unlike):
        while True:
            c = names[rng.integers(len(names))]
            if all(_far(c, u) for u in unlike):
                return c

    grounds = [c for c in names if open_grounds or c not in HELDOUT_GROUNDS]
    while True:
        bg = grounds[rng.integers(len(grounds))]
        bg_tex = "plain" if rng.random() < 0.4 else tex[1 + rng.integers(len(tex) - 1)]
        bg2 = bg
        while bg_tex != "plain" and not _far(bg2, bg):
            bg2 = grounds[rng.integers(len(grounds))]
        fill = colour(bg)
        fill_tex = "plain" if rng.random() < 0.3 else tex[1 + rng.integers(len(tex) - 1)]
        look = Look(fill=fill, fill_texture=fill_tex, fill2=colour(fill), outline=OUTLINES[rng.integers(3)],
                    outline_colour=colour(fill), background=bg, background_texture=bg_tex, background2=bg2,
                    effect="none" if rng.random() < 0.5 else EFFECTS[1 + rng.integers(4)])
        if too_close(look, open_grounds) is None:
            return look


_LOOK_RE = re.compile(
    r"with (?P<fill>\w+)(?: and (?P<fill2>\w+) (?P<ftex>\w+))? fill"
    r"(?:, a (?P<outline>\w+) (?P<ocol>\w+) outline)?"
    r", on (?P<bg>\w+)(?: with (?P<bg2>\w+) (?P<btex>grid lines|\w+))?"
    r"(?:, (?P<effect>\w+))?$")


def parse_look(descriptor: str, open_grounds: bool = False) -> Look:
    """The look a descriptor names (the inverse of ``Look.descriptor``); ValueError naming what is wrong.
    ``open_grounds``: judged as ``draw_look(open_grounds=True)`` draws (see ``too_close``)."""
    m = _LOOK_RE.fullmatch(descriptor.strip())
    if m is None:
        raise ValueError(f"cannot read the look {descriptor!r}; expected e.g. "
                         f"'{Look('red', 'dotted', 'white', 'thick', 'black', 'blue', 'striped', 'pink').descriptor}'")
    by_adj = {adj: t for t, (adj, _) in TEXTURES.items() if adj}
    by_noun = {noun: t for t, (_, noun) in TEXTURES.items() if noun}
    ftex, btex = m["ftex"], m["btex"]
    if ftex is not None and ftex not in by_adj:
        raise ValueError(f"unknown fill texture {ftex!r}; expected one of {', '.join(by_adj)}")
    if btex is not None and btex not in by_noun:
        raise ValueError(f"unknown background texture {btex!r}; expected one of {', '.join(by_noun)}")
    look = Look(fill=m["fill"], fill_texture=by_adj[ftex] if ftex else "plain", fill2=m["fill2"] or "white",
                outline=m["outline"] or "none", outline_colour=m["ocol"] or "black", background=m["bg"],
                background_texture=by_noun[btex] if btex else "plain", background2=m["bg2"] or "grey",
                effect=m["effect"] or "none")
    if (held := too_close(look, open_grounds)) is not None:
        raise ValueError(f"the look {descriptor!r} is too close to the held-out style {held}, "
                         f"which the base must never see")
    return look


# the style space's texture names -> the varied painter's (styles._texture draws scale, angle and phase)
_TEXTURE_OF = {"plain": "plain", "striped": "stripes", "dotted": "dots", "checkered": "checker", "gridded": "grid",
               "shaded": "gradient"}


def _pattern(c: Canvas, kind: str) -> np.ndarray:
    """A (H, W) pattern in [0, 1] of one texture; "mottled" is two-tone noise blobs."""
    if kind == "mottled":
        return (_texture(c, "noise") > 0.5).astype(np.float32)
    return _texture(c, _TEXTURE_OF[kind])


def paint(c: Canvas, look: Look) -> np.ndarray:
    """The (H, W, 3) float picture of the canvas's object in ``look``."""
    bg = mix(c.color(COLOURS[look.background]), c.color(COLOURS[look.background2]),
             _pattern(c, look.background_texture))
    body = mix(c.color(COLOURS[look.fill]), c.color(COLOURS[look.fill2]), _pattern(c, look.fill_texture))
    img = over(bg, body, c.fill)
    if look.outline != "none":
        img = over(img, c.color(COLOURS[look.outline_colour]), c.edge if look.outline == "thin" else c.thick)
    if look.effect == "pixelated":
        img = pixelate(img, 4)
    elif look.effect == "glowing":
        img = img + np.asarray(COLOURS[look.fill], np.float32) * (0.6 * blur(c.fill, 2.5))[..., None]
    elif look.effect == "grainy":
        img = img + c.rng.normal(0, 0.05, (SIZE, SIZE, 1)).astype(np.float32)
    elif look.effect == "blurred":
        img = blur(img, 1.0)
    return np.clip(img, 0, 1)
