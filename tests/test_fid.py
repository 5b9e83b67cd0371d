"""The toy FID: a Fréchet distance that sees what the lenient oracles let through (blur, mode collapse)."""

import numpy as np
from PIL import Image, ImageFilter

from styledrop import world
from styledrop.fid import frechet, real_renders, toy_fid
from styledrop.oracle import Oracles


def test_frechet_matches_the_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 2))
    b = rng.normal(size=(4000, 2)) * np.array([2.0, 0.5]) + np.array([1.0, 0.0])
    # N(0, I) vs N((1, 0), diag(4, 0.25)): |mu|^2 + sum(s_a + s_b - 2 sqrt(s_a s_b)) = 1 + (1 + 4 - 4) + (1 + .25 - 1)
    assert abs(frechet(a, b) - 2.25) < 0.15
    assert abs(frechet(a, a)) < 1e-9
    assert frechet(a[:10], b[:10]) > 0  # fewer pictures than dimensions would leave a singular covariance


def test_toy_fid_sees_blur_the_oracles_let_through_and_collapse():
    oracles = Oracles.load()
    pairs = [world.pairs("pretrain")[i % 20] for i in range(96)]
    real, other = real_renders(pairs, 1), real_renders(pairs, 2)
    blurred = [np.asarray(Image.fromarray(im).filter(ImageFilter.GaussianBlur(1.5))) for im in other]
    content = np.mean([p["content"] == c for p, (c, _) in zip(oracles.classify(blurred), pairs)])
    assert content > 0.9  # the oracle still calls the blurred pictures right ...
    collapsed = [other[0]] * len(other)
    floor, blur, same = (toy_fid(oracles, x, real) for x in (other, blurred, collapsed))
    assert 2 * floor < blur < same, (floor, blur, same)  # ... the distance does not
