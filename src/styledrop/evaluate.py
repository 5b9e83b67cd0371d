"""Measuring what we generate: oracle accuracies and CLIP scores.

- ``clip_t``: cosine similarity of CLIP's image embedding and the prompt's text embedding.
- ``clip_i``: cosine similarity of CLIP image embeddings (e.g. to a style reference).
- oracle ``content_acc`` / ``style_acc``: fraction classified as the intended content / style.

The CLIP is a ``scorer.Scorer`` (the base's own, or ``--scorer``). The oracles know only the toy world;
on any other base they are None and only the CLIP scores are reported.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from . import world
from .adapters import attached
from .muse.sampler import SampleConfig, generate
from .muse.vq import psnr, round_trip
from .oracle import Oracles, to_images, to_tensor
from .scorer import Scorer


def oracle_scores(oracles: Oracles, images, contents: list[str], styles: list[str]) -> dict:
    preds = oracles.classify(list(images))
    return {
        "content_acc": float(np.mean([p["content"] == c for p, c in zip(preds, contents)])),
        "style_acc": float(np.mean([p["style"] == s for p, s in zip(preds, styles)])),
    }


_NAMES = list(world.space.COLOURS)
_RGB = np.array([world.space.COLOURS[n] for n in _NAMES]) * 255


def _main_colour(pixels: np.ndarray) -> str:
    """The named colour most of these (N, 3) pixels are closest to."""
    d = ((pixels[:, None, :].astype(float) - _RGB[None]) ** 2).sum(-1)
    return _NAMES[int(np.bincount(d.argmin(1), minlength=len(_NAMES)).argmax())]


def look_scores(images, looks: list) -> dict:
    """Whether each picture shows its style-space look: ``ground_acc``, the main colour of the 4-px border is
    the look's background (or its texture's colour); ``fill_acc``, the main colour of the centre 16x16 is the
    fill's (or its texture's, or the outline's). Real renders score 0.94 / 0.80 (pose "centered")."""
    ground, fill = [], []
    for im, look in zip(images, looks):
        border = np.concatenate([im[:4].reshape(-1, 3), im[-4:].reshape(-1, 3), im[:, :4].reshape(-1, 3),
                                 im[:, -4:].reshape(-1, 3)])
        ground.append(_main_colour(border) in {look.background, look.background2})
        fill.append(_main_colour(im[24:40, 24:40].reshape(-1, 3)) in {look.fill, look.fill2, look.outline_colour})
    return {"ground_acc": float(np.mean(ground)), "fill_acc": float(np.mean(fill))}


def space_prompt_set(n: int = 48, seed: int = 0) -> list[world.Sample]:
    """Real renders of style-space looks on pretraining contents: their captions are the prompts."""
    return [world.sample(i, 7000 + seed, world.choose_pairs("pretrain", world.SPACE), "centered") for i in range(n)]


def base_prompt_set(per_group: int = 48, seed: int = 0) -> dict[str, list[tuple[str, str]]]:
    """Fixed (content, style) lists for the three questions asked of the base model."""
    rng = np.random.default_rng(seed)
    groups = {"pretrain": world.pairs("pretrain"), "heldout_pair": world.pairs("heldout_pair"),
              "heldout_style": world.pairs("heldout_style")}
    out = {}
    for name, pairs in groups.items():
        picks = rng.permutation(len(pairs))
        out[name] = [pairs[picks[i % len(pairs)]] for i in range(per_group)]
    return out


def evaluate_base(base, oracles: Oracles, cfg: SampleConfig, per_group: int = 48, progress=None,
                  scorer: Scorer | None = None) -> dict:
    """Oracle accuracies, toy FID (with its real-vs-real floor and VQ round-trip figures) and CLIP-T of
    base-model samples for pretraining pairs, held-out pairs of seen styles and contents, and held-out styles."""
    from .fid import real_renders, reference_figures, toy_fid
    scorer = scorer or Scorer.of_base(base)
    report = {}
    for k, (name, pairs) in enumerate(base_prompt_set(per_group).items()):
        prompts = [world.caption(c, s) for c, s in pairs]
        images = generate(base, prompts, replace(cfg, seed=cfg.seed + 1000 * k))
        scores = oracle_scores(oracles, images, [c for c, _ in pairs], [s for _, s in pairs])
        scores["fid"] = toy_fid(oracles, images, real_renders(pairs, 5000 + k))
        scores |= reference_figures(base.vq, oracles, pairs, 5000 + k)
        if scorer is not None:
            scores["clip_t"] = float(scorer.clip_t(images, prompts).mean())
        report[name] = scores | {"n": len(pairs)}
        if progress:
            progress(k + 1, 4, {})
    real = space_prompt_set(per_group)  # descriptor prompts: does G draw the look it is asked for?
    looks = [world.space.parse_look(s.look) for s in real]
    images = generate(base, [s.caption for s in real], replace(cfg, seed=cfg.seed + 3000))
    pictures, contents, styles = [s.image for s in real], [s.content for s in real], [s.style for s in real]
    on_real = look_scores(pictures, looks)
    report["space"] = {"content_acc": oracle_scores(oracles, images, contents, styles)["content_acc"],
                       **look_scores(images, looks),
                       "real_content_acc": oracle_scores(oracles, pictures, contents, styles)["content_acc"],
                       "real_ground_acc": on_real["ground_acc"], "real_fill_acc": on_real["fill_acc"],
                       "fid": toy_fid(oracles, images, pictures), "n": len(real)}
    if scorer is not None:
        report["space"]["clip_t"] = float(scorer.clip_t(images, [s.caption for s in real]).mean())
    if progress:
        progress(4, 4, {})
    return report


@torch.no_grad()
def evaluate_vq(vq, oracles: Oracles, n: int = 512, seed: int = 7, split: str = "pretrain") -> dict:
    """PSNR and oracle accuracy on VQ reconstructions of fresh images of one split
    (or ``split="space"``: pretraining contents in the style space; its style accuracy means nothing)."""
    choices = world.choose_pairs("pretrain", world.SPACE) if split == "space" else world.pairs(split)
    samples = world.batch(n, seed, choices)
    x = to_tensor([s.image for s in samples])
    recon, codes = round_trip(vq, x)
    scores = oracle_scores(oracles, to_images(recon), [s.content for s in samples], [s.style for s in samples])
    return {"psnr": psnr(recon, x), "codes_used": len(torch.unique(codes)), **scores}


def space_heldout_fraction(oracles: Oracles, n: int = 2000, seed: int = 11) -> dict:
    """Fraction of style-space renders (every content) that the style oracle calls a held-out style."""
    samples = world.batch(n, seed, world.choose_pairs(style=world.SPACE))
    called = [p["style"] for p in oracles.classify([s.image for s in samples])]
    by_style = {s: float(np.mean([c == s for c in called])) for s in world.HELDOUT_STYLES}
    # the paper's regime: how often a style-space look is one of the held-out variants (never pretrained on)
    by_variant = {s: float(np.mean([c == s for c in called])) for s in world.HELDOUT_VARIANTS}
    return {"heldout_fraction": float(sum(by_style.values())), "by_style": by_style, "n": n,
            "variant_fraction": float(sum(by_variant.values())), "by_variant": by_variant}


def style_prompt(content_prompt: str, descriptor: str) -> str:
    """Append the style descriptor to a prompt unless the user already wrote it."""
    if descriptor and descriptor.lower() not in content_prompt.lower():
        return f"{content_prompt.rstrip()} {descriptor.strip()}"
    return content_prompt


def style_eval_prompts(oracles: Oracles | None, reference: np.ndarray, seeds: int = 4,
                       contents: list[str] | None = None):
    """The reference as the oracles see it (None without oracles), and the (content prompt, seed index) pairs
    asked of a style adapter: every pretraining content except the reference's, ``seeds`` times each."""
    ref = oracles.classify([reference])[0] if oracles is not None else None
    contents = contents or [c for c in world.PRETRAIN_CONTENTS if ref is None or c != ref["content"]]
    return ref, [(c, k) for c in contents for k in range(seeds)]


def content_prompt(content: str) -> str:
    """The prompt for a content: a world content's caption ("a cat"), any other text as it is."""
    return world.caption(content, None) if content in world.SHAPES else content


def style_metrics(scorer: Scorer | None, oracles: Oracles | None, images, pairs, ref: dict | None,
                  reference: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image scores of images drawn for ``pairs``: oracle style / content / leakage hits (with oracles),
    CLIP-T against the content prompt and CLIP-I to the reference (with a scorer)."""
    out = {}
    if oracles is not None:
        preds = oracles.classify(list(images))
        out = {
            "style_acc": np.array([p["style"] == ref["style"] for p in preds], float),
            "content_acc": np.array([p["content"] == c for p, (c, _) in zip(preds, pairs)], float),
            "leakage": np.array([p["content"] == ref["content"] for p in preds], float),
        }
    if scorer is not None:
        out["clip_t"] = scorer.clip_t(images, [content_prompt(c) for c, _ in pairs]).numpy()
        out["clip_i"] = scorer.clip_i(images, reference).numpy()
    return out


def style_samples(base, adapter, descriptor: str, pairs, cfg: SampleConfig, lambda_a: float, lambda_b: float):
    """Images for ``pairs`` with the style descriptor appended: adapter-guided, or the base alone if adapter is None."""
    from dataclasses import replace

    from .device import split_draw
    from .muse.sampler import guided_logits_fn
    prompts = [style_prompt(content_prompt(c), descriptor) for c, _ in pairs]

    def draw(ps, seed):  # under a multi-process launch each process draws a share; all of them get every picture
        return generate(base, ps, replace(cfg, seed=seed), logits_fn_for=lambda qs: guided_logits_fn(
            base, qs, lambda_b=lambda_b, adapter=adapter, lambda_a=lambda_a if adapter is not None else 0.0))

    if adapter is None:
        return split_draw(prompts, cfg.seed, draw, everywhere=True)
    with attached(adapter, base.transformer):
        return split_draw(prompts, cfg.seed, draw, everywhere=True)


def evaluate_style(base, oracles: Oracles | None, adapter, meta: dict, reference: np.ndarray, cfg: SampleConfig,
                   lambda_a: float, lambda_b: float, seeds: int = 4, contents: list[str] | None = None,
                   scorer: Scorer | None = None, second: Oracles | None = None) -> dict:
    """How well an adapter draws *other* contents in the reference's style, against the base alone.

    The reference's true content and style are what the oracles see in it. ``leakage`` is the
    fraction of images drawn as the reference's content; ``clip_t`` scores each image against
    its content prompt (without the style descriptor); ``clip_i`` is CLIP similarity to the reference.
    ``contents`` may be world contents or any prompts (a base that is not the toy world's).
    ``second``: other oracles (the space-aware judge) read the same images too, as ``report[name]["second"]``.
    """
    scorer = scorer or Scorer.of_base(base)
    from .fid import real_renders, reference_figures, toy_fid
    ref, pairs = style_eval_prompts(oracles, reference, seeds, contents)
    report = {"reference": ref, "n": len(pairs)}
    truth = [(c, ref["style"]) for c, _ in pairs] if ref is not None else None  # real renders of that style
    if truth is not None:
        report |= reference_figures(base.vq, oracles, truth, 6000)
    seen = second.classify([reference])[0] if second is not None else None  # as the second judge sees it
    for name, theta in (("adapter", adapter), ("base", None)):
        images = style_samples(base, theta, meta.get("style", ""), pairs, cfg, lambda_a, lambda_b)
        report[name] = {k: float(v.mean()) for k, v in style_metrics(scorer, oracles, images, pairs, ref,
                                                                     reference).items()}
        if truth is not None:
            report[name]["fid"] = toy_fid(oracles, images, real_renders(truth, 6000))
        if second is not None:
            report[name]["second"] = {k: float(v.mean()) for k, v in style_metrics(None, second, images, pairs, seen,
                                                                                   reference).items()}
        report.setdefault("images", {})[name] = images
    return report
