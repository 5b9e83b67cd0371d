"""Two θ's at sampling time: a style adapter θs and a subject (content) adapter θc, trained apart.

``two-theta`` (the paper's): at every decoding step l = (1 − γ)·l_s + γ·l_c, where
  l_s = Ĝθs(t) + λA·(Ĝθs(t) − G(t)) + λB·(G(t) − G(n))   on the full prompt t ("a [v] fish in lava style"),
  l_c = Ĝθc(c) + λA·(Ĝθc(c) − G(c)) + λB·(G(c) − G(n))   on the prompt c without the descriptor ("a [v] fish").
The five distinct forwards (θs·t, θc·c, G·t, G·c, G·n) run as one batch: both adapters are
attached at once, each switched on for its own rows only.
``stack``: both adapters on together, one guided logit on t. ``merge``: one adapter whose weights
are the sum of both (same kind and rank), guided on t. The last two are the comparison baselines.
"""

from __future__ import annotations

import torch

from . import adapters
from .evaluate import style_prompt
from .io import UserError
from .muse.sampler import LogitsFn, gated_logits

MODES = ("two-theta", "stack", "merge")


def role_warnings(style_meta: dict, subject_meta: dict) -> list[str]:
    """Adapters given in the wrong slot still run, but the user should know."""
    out = []
    if style_meta.get("role", "style") != "style":
        out.append(f"the --style adapter was trained as a {style_meta.get('role')} adapter")
    if subject_meta.get("role") != "subject":
        out.append(f"the --subject adapter was trained as a {subject_meta.get('role', 'style')} adapter")
    return out


def subject_prompt(prompt: str, descriptor: str) -> str:
    """The prompt c of the subject branch: the user's prompt without the style descriptor."""
    if descriptor and descriptor.lower() in prompt.lower():
        i = prompt.lower().index(descriptor.lower())
        prompt = prompt[:i] + prompt[i + len(descriptor):]
    return " ".join(prompt.split())


def merge(style, subject, transformer):
    """An adapter whose parameters are θs + θc (both must have the same kind, rank and placement)."""
    if style.cfg != subject.cfg:
        shape = lambda c: f"{c.kind}/{c.rank}/{c.placement}"  # noqa: E731
        raise UserError(f"merge needs two adapters of the same kind, rank and placement; got {shape(style.cfg)} "
                        f"and {shape(subject.cfg)}")
    merged = adapters.build(style.cfg, transformer)
    theirs = subject.state_dict()
    merged.load_state_dict({k: v + theirs[k] for k, v in style.state_dict().items()})
    return merged.eval()


def compose_logits_fn(base, prompts: list[str], descriptor: str, style, subject, *, mode: str, gamma: float,
                      lambda_a: float, lambda_b: float, negative: str = "", merged=None) -> LogitsFn:
    """Logits for the full prompts (descriptor appended unless present) under one of ``MODES``.

    The adapters must already be attached to ``base.transformer`` (both for two-theta and stack,
    ``merged`` alone for merge)."""
    if mode not in MODES:
        raise UserError(f"unknown compose mode {mode!r}; expected one of {', '.join(MODES)}")
    if not 0 <= gamma <= 1:
        raise UserError(f"gamma must be in [0, 1] (0 = pure style, 1 = pure subject), got {gamma}")
    b = len(prompts)
    full = [style_prompt(p, descriptor) for p in prompts]
    t_h, t_p = base.encode_text(full)
    n_h, n_p = base.encode_text([negative] * b) if negative else base.encode_empty(b)
    on, off = torch.ones(b), torch.zeros(b)

    def guided(a, c, u):
        return a + lambda_a * (a - c) + lambda_b * (c - u)

    if mode == "two-theta":
        c_h, c_p = base.encode_text([subject_prompt(p, descriptor) for p in prompts])
        hidden = torch.cat([t_h, c_h, t_h, c_h, n_h])
        pooled = torch.cat([t_p, c_p, t_p, c_p, n_p])
        gates = [(style, torch.cat([on, off, off, off, off])), (subject, torch.cat([off, on, off, off, off]))]

        def fn(ids):
            a_s, a_c, g_t, g_c, g_n = gated_logits(base, gates, ids.repeat(5, 1), hidden, pooled).split(b)
            return (1 - gamma) * guided(a_s, g_t, g_n) + gamma * guided(a_c, g_c, g_n)
        return fn

    hidden, pooled = torch.cat([t_h, t_h, n_h]), torch.cat([t_p, t_p, n_p])
    gate = torch.cat([on, off, off])
    gated = [(style, gate), (subject, gate)] if mode == "stack" else [(merged, gate)]

    def fn(ids):
        return guided(*gated_logits(base, gated, ids.repeat(3, 1), hidden, pooled).split(b))
    return fn


class composed:
    """``with composed(base, θs, θc, mode) as merged:`` attaches what ``mode`` needs and detaches it after."""

    def __init__(self, base, style, subject, mode: str):
        if "token" in (style.cfg.kind, subject.cfg.kind):
            raise UserError("composing needs two adapters inside G; a token adapter only changes its words: write "
                            "both adapters' words in one prompt and sample with the other adapter")
        self.base, self.mode = base, mode
        self.merged = merge(style, subject, base.transformer) if mode == "merge" else None
        self.parts = [self.merged] if self.merged is not None else [style, subject]

    def __enter__(self):
        for a in self.parts:
            a.attach(self.base.transformer)
        return self.merged

    def __exit__(self, *exc):
        for a in reversed(self.parts):
            a.detach()


def evaluate_compose(base, oracles, style, style_meta: dict, subject, subject_meta: dict, style_reference,
                     cfg, *, gamma: float, lambda_a: float, lambda_b: float, seeds: int = 8,
                     modes: tuple[str, ...] = MODES, subject_images=None, scorer=None) -> dict:
    """Per compose mode: oracle ``style_acc`` (the style reference's style, as the oracle sees it),
    ``subject_acc`` (drawn as the subject's class), ``clip_t`` against "a CLASS + descriptor" (with a scorer:
    ``scorer``, else the base's own). Without oracles (a base that is not the toy world's) only ``clip_t``."""
    from . import world
    from .muse.sampler import generate
    from .scorer import Scorer
    scorer = scorer or Scorer.of_base(base)
    target_style = oracles.classify([style_reference])[0]["style"] if oracles is not None else None
    cls = subject_meta.get("class", "")
    if oracles is not None and cls not in world.CONTENTS and subject_images is not None:  # unknown to the oracle
        views = [p["content"] for p in oracles.classify(list(subject_images))]
        cls = max(set(views), key=views.count)
    descriptor = style_meta.get("style", "")
    prompt = subject_meta.get("caption") or f"a {subject_meta.get('token', '')} {cls}"
    prompts = [prompt] * seeds
    report = {"prompt": style_prompt(prompt, descriptor), "target_style": target_style, "subject_class": cls,
              "gamma": gamma, "n": seeds}
    for mode in modes:
        with composed(base, style, subject, mode) as merged:
            images = generate(base, prompts, cfg, logits_fn_for=lambda ps: compose_logits_fn(
                base, ps, descriptor, style, subject, mode=mode, gamma=gamma, lambda_a=lambda_a,
                lambda_b=lambda_b, merged=merged))
        r = {}
        if oracles is not None:
            preds = oracles.classify(list(images))
            r = {"style_acc": sum(p["style"] == target_style for p in preds) / seeds,
                 "subject_acc": sum(p["content"] == cls for p in preds) / seeds}
            r["mean"] = (r["style_acc"] + r["subject_acc"]) / 2
        if scorer is not None:
            text = style_prompt(f"{world.article(cls)} {cls}" if cls else prompt, descriptor)
            r["clip_t"] = float(scorer.clip_t(images, [text] * seeds).mean())
        report[mode] = r
        report.setdefault("images", {})[mode] = images
    return report
