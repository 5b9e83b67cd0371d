"""Adapters θ: the few parameters StyleDrop trains while G stays frozen.

``bottleneck`` (the paper's): ``h + W_up·GELU(W_down·h)`` with W_up zero-initialised and W_down
truncated-normal (std 0.02), placed after the cross-attention and after the MLP of every
transformer layer, each site with its own weights. ``shared`` (the paper's small variant): one
W_down/W_up pair for all sites, plus a per-site offset inside the bottleneck and on the output.
``lora``: LoRA (via peft) on the cross-attention and MLP projections of every layer.
``token``: textual inversion, the style words' input embeddings in T (``token_adapter.py``); G untouched.
``placement="layers+up"`` (ours, off by default) adds bottleneck sites in G's up block, the convolutional
block between the transformer and the output layer, after its res block and its cross-attention: fitting
all of G to a new look showed that block learns the most per weight (docs/experiments.md).

Adapters attach to G with forward hooks, so G itself is never modified and the same G runs with
and without them. ``gate`` (one 0/1 per batch row) switches an adapter on for some rows only:
that is how adapter-guided sampling runs Ĝθ(t), G(t) and G(n) in one forward call.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

KINDS = ("bottleneck", "shared", "lora", "token")
PLACEMENTS = ("layers", "layers+up")


@dataclass(frozen=True)
class AdapterConfig:
    kind: str = "bottleneck"
    rank: int = 8  # bottleneck width (or LoRA rank)
    placement: str = "layers"  # the paper's sites, or those plus the up block's ("layers+up")

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown adapter kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        if not 1 <= self.rank <= 1024:
            raise ValueError(f"rank must be in 1..1024, got {self.rank}")
        if self.placement not in PLACEMENTS:
            raise ValueError(f"unknown placement {self.placement!r}; expected one of {', '.join(PLACEMENTS)}")
        if self.placement != "layers" and self.kind != "bottleneck":
            raise ValueError(f"placement {self.placement!r} is built for bottleneck adapters only, not {self.kind!r}")


@dataclass(frozen=True)
class Site:
    name: str
    module: nn.Module
    width: int
    channels_first: bool = False  # a conv block's (B, C, H, W) output rather than (B, L, C)


def sites(transformer, placement: str = "layers") -> list[Site]:
    """Where adapters go: after cross-attention and after the MLP of every transformer layer (the paper's),
    and with ``layers+up`` after the up block's res blocks and cross-attentions too."""
    width = transformer.config.hidden_size
    out = []
    for i, block in enumerate(transformer.transformer_layers):
        out += [Site(f"layer{i}.cross_attn", block.attn2, width), Site(f"layer{i}.mlp", block.ff, width)]
    if placement == "layers+up":
        up, conv_width = transformer.up_block, transformer.config.block_out_channels
        for i, (res, attn) in enumerate(zip(up.res_blocks, up.attention_blocks)):
            out += [Site(f"up{i}.res", res, conv_width, channels_first=True),
                    Site(f"up{i}.cross_attn", attn.attn2, conv_width)]
    return out


class Bottleneck(nn.Module):
    def __init__(self, dim: int, rank: int):
        super().__init__()
        self.down = nn.Linear(dim, rank)
        self.up = nn.Linear(rank, dim)
        nn.init.trunc_normal_(self.down.weight, std=0.02)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)  # a new adapter leaves G's output unchanged
        nn.init.zeros_(self.up.bias)

    def forward(self, h, offset_in=None, offset_out=None):
        z = self.down(h)
        if offset_in is not None:
            z = z + offset_in
        out = self.up(F.gelu(z))
        return out if offset_out is None else out + offset_out


class Adapter(nn.Module):
    """A set of adapters for one G: ``delta(site, h)`` is added to that site's output."""

    def __init__(self, cfg: AdapterConfig, dim: int, n_sites: int, widths: list[int] | None = None):
        super().__init__()
        self.cfg, self.dim, self.n_sites = cfg, dim, n_sites
        self.widths = widths or [dim] * n_sites  # per site; only layers+up mixes widths
        if cfg.kind == "bottleneck":
            self.blocks = nn.ModuleList(Bottleneck(w, cfg.rank) for w in self.widths)
        elif cfg.kind == "shared":
            self.shared = Bottleneck(dim, cfg.rank)
            self.offset_in = nn.Parameter(torch.zeros(n_sites, cfg.rank))
            self.offset_out = nn.Parameter(torch.zeros(n_sites, dim))
        else:
            raise ValueError("LoRA adapters are built by LoraAdapter")
        self.gate: torch.Tensor | None = None  # (B,) of 0/1, or None = on for every row
        self.scale = 1.0
        self._handles = []

    def delta(self, site: int, h: torch.Tensor) -> torch.Tensor:
        x = h.to(self.weight_dtype())  # adapter weights stay fp32 when G runs in half precision
        if self.cfg.kind == "bottleneck":
            d = self.blocks[site](x)
        else:
            d = self.shared(x, self.offset_in[site], self.offset_out[site])
        d = d.to(h.dtype)
        if self.gate is not None:
            d = d * self.gate.to(d.device, d.dtype).view(-1, *([1] * (d.dim() - 1)))
        return d * self.scale

    def weight_dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def attach(self, transformer) -> "Adapter":
        found = sites(transformer, self.cfg.placement)
        if [s.width for s in found] != self.widths or transformer.config.hidden_size != self.dim:
            raise ValueError(f"adapter was built for {self.n_sites} sites of width {self.dim}; this transformer "
                             f"has {len(found)} of width {transformer.config.hidden_size}")
        for k, site in enumerate(found):
            hook = self._channels_first_hook(k) if site.channels_first else (
                lambda mod, inp, out, k=k: out + self.delta(k, out))
            self._handles.append(site.module.register_forward_hook(hook))
        return self

    def _channels_first_hook(self, k: int):
        def hook(mod, inp, out):  # the bottleneck mixes channels, so move them last and back
            return out + self.delta(k, out.movedim(1, -1)).movedim(-1, 1)
        return hook

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def meta(self) -> dict:
        return {"adapter": asdict(self.cfg), "dim": self.dim, "sites": self.n_sites}


def build(cfg: AdapterConfig, transformer, base=None, words: str | None = None, token_ids=None) -> nn.Module:
    """A new, zero-effect adapter for ``transformer`` (not yet attached); a ``token`` adapter also needs the
    ``base`` (its T) and the ``words`` it learns (or their ``token_ids``, when loading one)."""
    device = next(transformer.parameters()).device  # on G's device, in fp32 whatever G's dtype
    if cfg.kind == "token":
        from .token_adapter import TokenAdapter
        return TokenAdapter(cfg, base, words, token_ids).to(device)
    if cfg.kind == "lora":
        from .lora import LoraAdapter
        return LoraAdapter(cfg, transformer).to(device)
    found = sites(transformer, cfg.placement)
    return Adapter(cfg, transformer.config.hidden_size, len(found), [s.width for s in found]).to(device)


@contextmanager
def attached(adapter: nn.Module, transformer):
    """``with attached(theta, G):`` G runs with the adapter inside the block, and without it after."""
    adapter.attach(transformer)
    try:
        yield adapter
    finally:
        adapter.detach()


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


FORMAT = "styledrop-adapter/1"


def save(path, adapter: nn.Module, base, info: dict) -> None:
    """Safetensors with the adapter weights; metadata names the base, the adapter and the prompt.

    Adapter files get shared, so no absolute local path goes in: the base is named by its id and folder name,
    and ``info["train"]["images"]`` (paths as the caller can open them) are written relative to the file."""
    from .io import save_tensors
    if isinstance(info.get("train", {}).get("images"), list):
        here = Path(path).resolve().parent
        info = info | {"train": info["train"] | {"images": [
            os.path.relpath(Path(p).resolve(), here) for p in info["train"]["images"]]}}
    meta = adapter.meta() | {"format": FORMAT, "base_id": base.model_id(), "base_name": Path(base.path).name} | info
    save_tensors(path, adapter.state_dict(), meta)


def trained_images(meta: dict, path) -> list[Path]:
    """The pictures an adapter was trained on, found relative to its file (files written before that rule held
    paths as typed: those are tried as they are too)."""
    out = []
    for p in meta["train"]["images"]:
        near = Path(path).resolve().parent / p
        out.append(near if near.exists() or Path(p).is_absolute() else Path(p))
    return out


def load(path, base) -> tuple[nn.Module, dict]:
    """Load an adapter for ``base``; refuses one trained for another base or of the wrong shape."""
    from .io import UserError, load_tensors
    tensors, meta = load_tensors(path)
    if meta.get("format") != FORMAT:
        raise UserError(f"{path} is not a styledrop adapter (no '{FORMAT}' metadata)")
    if meta["base_id"] != base.model_id():
        made = meta.get("base_name") or meta.get("base_path")  # base_path: files written before base_name
        raise UserError(f"{path} was trained for base {meta['base_id']} ({made}), "
                        f"but the base in use is {base.model_id()} ({Path(base.path).name}): an adapter fits only the "
                        f"G it was trained on, so train it again on this base (styledrop train)")
    try:
        adapter = build(AdapterConfig(**meta["adapter"]), base.transformer, base, meta.get("words"),
                        meta.get("token_ids"))
        adapter.load_state_dict(tensors)
    except (ValueError, RuntimeError, TypeError) as e:
        raise UserError(f"{path}: adapter does not fit this base: {e}") from None
    return adapter, meta
