"""A toy FID: the Fréchet distance between generated pictures and fresh real renders, on the oracles' features.

The oracles' accuracies are lenient: a blurry blob of the right colour passes as pop art, and 16 copies of one
fish pass as 16 fish. The distance between feature distributions also sees blur (the features move) and mode
collapse (the generated covariance shrinks). Features: both oracles' pooled penultimate activations (64 + 64).
With tens of pictures per set the covariance is rough, so a figure means something only beside figures made
with the same number of pictures: the real-vs-real floor (two render seeds) and the VQ round trip (what the
codec alone costs), which ``reference_figures`` gives.
"""

from __future__ import annotations

import numpy as np
import torch

from . import world
from .muse.vq import round_trip
from .oracle import Oracles, to_images, to_tensor


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two (N, D) feature sets."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # tr sqrt(A B) is the sum of the square roots of A B's eigenvalues, which are real and >= 0 for PSD A, B
    # (up to rounding: clipped); no matrix square root is needed, and a singular covariance (fewer pictures
    # than dimensions) is no problem
    eig = np.clip(np.real(np.linalg.eigvals(cov_a @ cov_b)), 0, None)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.sqrt(eig).sum())


def toy_fid(oracles: Oracles, images, real) -> float:
    return frechet(oracles.features(list(images)), oracles.features(list(real)))


def real_renders(pairs: list[tuple[str, str]], seed: int, pose: str = "centered") -> list[np.ndarray]:
    """One fresh render per (content, style) in ``pairs``; G learns upright centred objects (pose "centered")."""
    return [world.sample(i, seed, [pair], pose).image for i, pair in enumerate(pairs)]


@torch.no_grad()
def reconstructions(vq, images: list[np.ndarray]) -> np.ndarray:
    return to_images(round_trip(vq, to_tensor(images))[0])


def reference_figures(vq, oracles: Oracles, pairs, seed: int) -> dict:
    """What a toy FID on these pairs is to be read against: ``fid_floor`` (two sets of real renders) and
    ``fid_vq`` (the VQ round trip of one set against the other)."""
    a, b = real_renders(pairs, seed), real_renders(pairs, seed + 1)
    return {"fid_floor": toy_fid(oracles, b, a), "fid_vq": toy_fid(oracles, reconstructions(vq, b), a)}
