"""Content classes of the toy world: each is a list of filled polygons in a unit frame.

A shape is drawn in a frame where x and y run over [-1, 1] (y grows downwards). Each
function takes a numpy Generator and returns ``[(points, add), ...]``: ``add=True``
paints the polygon into the mask, ``add=False`` cuts it out (doors, eyes, rings). The
small random jitter on every parameter is the "small shape variation" of the world.
"""

from __future__ import annotations

import math

import numpy as np

Part = tuple[list[tuple[float, float]], bool]


def ellipse(cx, cy, rx, ry, a0=0.0, a1=2 * math.pi, n=40):
    """Polygon of an ellipse (or an arc closed by its chord when a0..a1 is partial)."""
    angles = np.linspace(a0, a1, n)
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]


def rect(x0, y0, x1, y1):
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def house(r):
    w, roof = r.uniform(0.6, 0.8), r.uniform(-0.95, -0.75)
    return [
        (rect(-w, -0.1, w, 0.9), True),
        ([(-w - 0.2, -0.05), (0, roof), (w + 0.2, -0.05)], True),
        (rect(-0.17, 0.4, 0.17, 0.9), False),  # door
        (rect(0.3, 0.15, 0.52, 0.35), False),  # window
    ]


def tree(r):
    rx, ry = r.uniform(0.6, 0.8), r.uniform(0.55, 0.7)
    t = r.uniform(0.1, 0.17)
    return [(rect(-t, 0.2, t, 1.0), True), (ellipse(0, -0.3, rx, ry), True)]


def fish(r):
    rx, ry = r.uniform(0.55, 0.7), r.uniform(0.3, 0.45)
    tail = r.uniform(0.35, 0.5)
    return [
        (ellipse(-0.2, 0, rx, ry), True),
        ([(0.35, 0), (0.95, -tail), (0.95, tail)], True),
        (ellipse(-0.55, -0.08, 0.09, 0.09, n=16), False),  # eye
    ]


def car(r):
    top = r.uniform(-0.6, -0.45)
    return [
        (rect(-0.95, -0.05, 0.95, 0.45), True),
        ([(-0.55, -0.04), (-0.35, top), (0.35, top), (0.6, -0.04)], True),
        (rect(-0.3, top + 0.12, 0.3, -0.12), False),  # windows
        (ellipse(-0.55, 0.5, 0.26, 0.26, n=24), True),
        (ellipse(0.55, 0.5, 0.26, 0.26, n=24), True),
    ]


def cat(r):
    ear = r.uniform(-0.95, -0.8)
    rad = r.uniform(0.55, 0.65)
    return [
        (ellipse(0, 0.15, rad, rad * 0.9), True),
        ([(-0.6, -0.1), (-0.5, ear), (-0.1, -0.4)], True),
        ([(0.6, -0.1), (0.5, ear), (0.1, -0.4)], True),
        (ellipse(-0.25, 0.05, 0.1, 0.13, n=16), False),
        (ellipse(0.25, 0.05, 0.1, 0.13, n=16), False),
        ([(-0.08, 0.3), (0.08, 0.3), (0, 0.4)], False),  # nose
    ]


def star(r):
    inner = r.uniform(0.35, 0.48)
    pts = []
    for k in range(10):
        a = -math.pi / 2 + k * math.pi / 5
        rad = 0.95 if k % 2 == 0 else inner
        pts.append((rad * math.cos(a), rad * math.sin(a) + 0.05))
    return [(pts, True)]


def cup(r):
    top = r.uniform(0.55, 0.7)
    return [
        (ellipse(0.6, 0.05, 0.38, 0.38, n=24), True),  # handle ring
        (ellipse(0.6, 0.05, 0.19, 0.19, n=24), False),
        ([(-top, -0.6), (top, -0.6), (0.45, 0.8), (-0.45, 0.8)], True),
    ]


def boat(r):
    sail = r.uniform(0.6, 0.85)
    return [
        ([(-0.95, 0.35), (0.95, 0.35), (0.6, 0.8), (-0.6, 0.8)], True),
        (rect(-0.05, -0.9, 0.05, 0.35), True),
        ([(0.12, -0.85), (0.12, 0.25), (0.12 + sail, 0.25)], True),
        ([(-0.12, -0.6), (-0.12, 0.25), (-0.12 - sail * 0.6, 0.25)], True),
    ]


def mushroom(r):
    rx = r.uniform(0.85, 1.0)
    s = r.uniform(0.2, 0.3)
    return [
        (ellipse(0, 0.05, rx, 0.8, math.pi, 2 * math.pi), True),  # cap, flat bottom
        (rect(-s, 0.05, s, 0.85), True),
        (ellipse(-0.4, -0.3, 0.13, 0.13, n=16), False),  # spots
        (ellipse(0.3, -0.45, 0.12, 0.12, n=16), False),
    ]


def bird(r):
    wing = r.uniform(-0.85, -0.6)
    return [
        (ellipse(0.05, 0.15, 0.6, 0.38), True),
        (ellipse(-0.5, -0.25, 0.28, 0.28, n=24), True),
        ([(-0.72, -0.32), (-1.0, -0.2), (-0.72, -0.12)], True),  # beak
        ([(0.5, 0.1), (0.98, -0.25), (0.98, 0.35)], True),  # tail
        ([(-0.15, 0.0), (0.25, wing), (0.45, 0.05)], True),  # wing up
        (ellipse(-0.52, -0.3, 0.07, 0.07, n=12), False),
    ]


def heart(r):
    sq = r.uniform(0.9, 1.1)
    pts = []
    for t in np.linspace(0, 2 * math.pi, 60):
        x = 16 * math.sin(t) ** 3
        y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
        pts.append((x / 17 * sq, -y / 17 + 0.1))
    return [(pts, True)]


def moon(r):
    off = r.uniform(0.3, 0.45)
    return [(ellipse(0, 0, 0.9, 0.9), True), (ellipse(off, -0.2, 0.75, 0.75), False)]


def umbrella(r):
    h = r.uniform(0.6, 0.8)
    return [
        (ellipse(0, 0, 0.95, h, math.pi, 2 * math.pi), True),
        (ellipse(-0.63, 0.0, 0.32, 0.14, n=20), False),  # scalloped hem
        (ellipse(0.0, 0.0, 0.32, 0.14, n=20), False),
        (ellipse(0.63, 0.0, 0.32, 0.14, n=20), False),
        (rect(-0.05, -0.1, 0.05, 0.85), True),  # shaft
        (rect(-0.05, 0.77, 0.35, 0.87), True),  # J hook
        (rect(0.25, 0.55, 0.35, 0.87), True),
    ]


def rocket(r):
    w = r.uniform(0.25, 0.33)
    return [
        (rect(-w, -0.4, w, 0.6), True),
        ([(-w, -0.4), (0, -1.0), (w, -0.4)], True),  # nose
        ([(-w, 0.1), (-w - 0.35, 0.85), (-w, 0.6)], True),  # fins
        ([(w, 0.1), (w + 0.35, 0.85), (w, 0.6)], True),
        ([(-0.15, 0.6), (0.15, 0.6), (0, 0.95)], True),  # flame
        (ellipse(0, -0.15, 0.13, 0.13, n=16), False),  # window
    ]


def flower(r):
    pr = r.uniform(0.25, 0.32)
    parts = [(rect(-0.05, 0.2, 0.05, 1.0), True)]  # stem
    for k in range(5):
        a = -math.pi / 2 + k * 2 * math.pi / 5
        parts.append((ellipse(0.45 * math.cos(a), -0.3 + 0.45 * math.sin(a), pr, pr, n=20), True))
    parts.append((ellipse(0, -0.3, 0.17, 0.17, n=16), False))
    parts.append((ellipse(0, -0.3, 0.1, 0.1, n=12), True))
    parts.append(([(0.05, 0.6), (0.5, 0.35), (0.05, 0.75)], True))  # leaf
    return parts


def key(r):
    t = r.uniform(0.08, 0.12)
    return [
        (ellipse(-0.55, 0, 0.4, 0.4, n=32), True),
        (ellipse(-0.55, 0, 0.18, 0.18, n=20), False),
        (rect(-0.2, -t, 0.97, t), True),
        (rect(0.5, t, 0.62, 0.35), True),  # teeth
        (rect(0.78, t, 0.9, 0.42), True),
    ]


SHAPES = {
    f.__name__: f
    for f in (house, tree, fish, car, cat, star, cup, boat, mushroom, bird, heart, moon,
              umbrella, rocket, flower, key)
}
