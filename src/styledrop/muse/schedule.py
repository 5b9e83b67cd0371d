"""The masking schedule and the MaskGIT unmasking step: one source of truth for training and sampling."""

from __future__ import annotations

import math

import torch


def mask_ratio(t: torch.Tensor | float):
    """Cosine schedule: fraction of tokens masked at time t in [0, 1] (t=0 -> all masked)."""
    if torch.is_tensor(t):
        return torch.cos(t * math.pi / 2)
    return math.cos(t * math.pi / 2)


def random_mask(ids: torch.Tensor, mask_id: int, generator: torch.Generator | None = None, max_ratio: float = 1.0,
                block: int = 1):
    """Mask a cosine-scheduled random fraction of each row of ``ids`` (B, N), for training.

    ``max_ratio`` < 1 draws t only where the schedule masks at most that fraction. ``block`` > 1 masks whole
    ``block`` x ``block`` squares of the token grid, so that a masked token's neighbours are masked with it.
    Returns (masked ids, boolean mask of the positions to predict)."""
    b, n = ids.shape
    if block > 1:
        _, small = random_mask(ids.new_zeros(b, _blocks_a_side(n, block) ** 2), mask_id, generator, max_ratio)
        mask = _block_expand(small, block)
        return torch.where(mask, torch.full_like(ids, mask_id), ids), mask
    where = generator.device if generator is not None else ids.device  # a CPU generator may drive GPU ids
    t0 = math.acos(min(max(max_ratio, 0.0), 1.0)) * 2 / math.pi  # mask_ratio(t0) = max_ratio
    t = t0 + (1 - t0) * torch.rand(b, generator=generator, device=where).to(ids.device)
    count = (mask_ratio(t) * n).round().clamp(min=1).long()  # (B,)
    scores = torch.rand(b, n, generator=generator, device=where).to(ids.device)
    ranks = scores.argsort(-1).argsort(-1)
    mask = ranks < count[:, None]
    return torch.where(mask, torch.full_like(ids, mask_id), ids), mask


def ring(grid: int, width: int) -> torch.Tensor:
    """(grid * grid,) True on the border ``width`` tokens deep: the context the in-context probe keeps and that
    ring-kept training leaves visible."""
    r = torch.arange(grid)
    edge = (r < width) | (r >= grid - width)
    return (edge[:, None] | edge[None, :]).flatten()


def _uniform(shape: tuple, generators: list[torch.Generator], device) -> torch.Tensor:
    """Uniform noise with row i drawn from generators[i]: image i depends on its own seed only."""
    rows = [torch.rand(shape, generator=g, device=g.device) for g in generators]
    return torch.stack(rows).to(device).clamp(1e-20, 1 - 1e-7)


def gumbel(shape: tuple, generators: list[torch.Generator], device) -> torch.Tensor:
    return -torch.log(-torch.log(_uniform(shape, generators, device)))


def sample_categorical(logp: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """One draw per position from softmax(logp) (B, N, K), by inverting the CDF: one uniform number per
    position rather than K Gumbel numbers, which made sampling slower than the transformer's forward."""
    cdf = logp.exp().cumsum(-1)
    u = _uniform(logp.shape[1:2], generators, logp.device) * cdf[..., -1]  # (B, N), scaled: cdf ends near 1
    return torch.searchsorted(cdf, u[..., None]).squeeze(-1).clamp(max=logp.shape[-1] - 1)


def _blocks_a_side(n: int, block: int) -> int:
    """How many block x block squares fit along a side of an ``n``-token square grid; they must tile it."""
    grid = math.isqrt(n)
    if grid * grid != n or grid % block:
        raise ValueError(f"block {block} does not tile a {n}-token grid")
    return grid // block


def _block_sum(x: torch.Tensor, block: int) -> torch.Tensor:
    """(B, N) over a square token grid -> (B, N / block²): the sum over each block x block square."""
    b, n = x.shape
    g = _blocks_a_side(n, block)
    return x.view(b, g, block, g, block).sum((2, 4)).view(b, g * g)


def _block_expand(x: torch.Tensor, block: int) -> torch.Tensor:
    """(B, N / block²) -> (B, N): each block's value on its block x block tokens."""
    b, m = x.shape
    g = math.isqrt(m)
    return x.view(b, g, 1, g, 1).expand(b, g, block, g, block).reshape(b, m * block * block)


def unmask_step(ids: torch.Tensor, logits: torch.Tensor, step: int, steps: int, mask_id: int, *,
                generators: list[torch.Generator], temperature: float = 1.0,
                token_temperature: float = 1.0, confidence: str = "sampled", block: int = 1) -> torch.Tensor:
    """One MaskGIT step: sample every masked token, keep the most confident, re-mask the rest.

    ids (B, N) with ``mask_id`` where unknown; logits (B, N, K). The number left masked after
    this step follows the cosine schedule; confidence gets Gumbel noise whose temperature
    anneals linearly to zero, so early steps explore and the last ones are greedy.
    ``confidence="sampled"`` ranks positions by the probability of the token just drawn (MaskGIT);
    ``"entropy"`` by how certain the position is whatever was drawn, which does not favour
    low-entropy tokens (flat backgrounds) over high-entropy ones (textured objects).
    ``block`` > 1 fixes whole block x block squares of the grid at a time, ranked by the summed confidence of
    their masked tokens (a square counts as masked while any of its tokens is): the way a G trained with
    ``random_mask(block=...)`` saw its inputs.
    Row i draws all its randomness from ``generators[i]``.
    """
    logp = (logits.float() / max(token_temperature, 1e-4)).log_softmax(-1)  # < 1 sharpens each token's choice
    sampled = sample_categorical(logp, generators)
    masked = ids == mask_id
    sampled = torch.where(masked, sampled, ids)
    if confidence == "entropy":
        conf = (logp.exp() * logp).sum(-1)  # minus the entropy of each position
    else:
        conf = logp.gather(-1, sampled[..., None]).squeeze(-1)
    open_units = masked  # what is ranked: tokens, or squares of them
    if block > 1:
        conf = _block_sum(torch.where(masked, conf, torch.zeros_like(conf)), block)  # masked tokens only
        open_units = _block_sum(masked.float(), block) > 0
    m = conf.shape[1]
    remaining = math.floor(m * mask_ratio((step + 1) / steps))
    if remaining == 0:
        return sampled
    conf = conf + temperature * (1 - (step + 1) / steps) * gumbel((m,), generators, ids.device)
    conf = torch.where(open_units, conf, torch.full_like(conf, float("inf")))  # never re-mask known tokens
    # every step unmasks at least one unit, and never re-masks more than are masked now
    keep_masked = torch.clamp(open_units.sum(-1) - 1, min=0).clamp(max=remaining)  # (B,)
    lowest = conf.argsort(-1).argsort(-1) < keep_masked[:, None]
    if block > 1:
        lowest = _block_expand(lowest, block) & masked  # a square's known tokens stay
    return torch.where(lowest, torch.full_like(sampled, mask_id), sampled)
