"""LoRA adapters through peft, behind the same attach / detach / gate interface as ``adapters.Adapter``.

peft injects a LoRA layer around each target projection of G (cross-attention key, value and
output, and the MLP's output projection, in every transformer layer). The low-rank matrices are
parameters of this object, shared into peft's layers, so they save and load with it; detaching
deletes the adapter from those layers and G runs as before. A forward hook removes the LoRA term
for rows whose gate is 0, which gives the per-row switch that batched guidance needs.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import asdict

import torch
import torch.nn as nn
from peft import LoraConfig, inject_adapter_in_model

TARGETS = ("attn2.to_k", "attn2.to_v", "attn2.to_out.0", "ff.net.2")
_names = itertools.count()


def target_paths(transformer) -> list[str]:
    out = []
    for i in range(len(transformer.transformer_layers)):
        out += [f"transformer_layers.{i}.{t}" for t in TARGETS]
    return out


def _base_linear(module: nn.Module) -> nn.Linear:
    return module.base_layer if hasattr(module, "base_layer") else module


class LoraAdapter(nn.Module):
    def __init__(self, cfg, transformer):
        super().__init__()
        self.cfg, self.dim = cfg, transformer.config.hidden_size
        self.paths = target_paths(transformer)
        self.n_sites = len(self.paths)
        self.A, self.B = nn.ParameterDict(), nn.ParameterDict()
        for path in self.paths:
            lin = _base_linear(transformer.get_submodule(path))
            key = path.replace(".", "__")
            self.A[key] = nn.Parameter(torch.empty(cfg.rank, lin.in_features))
            nn.init.kaiming_uniform_(self.A[key], a=math.sqrt(5))
            self.B[key] = nn.Parameter(torch.zeros(lin.out_features, cfg.rank))  # zero: no effect at start
        self.name = f"styledrop_lora_{next(_names)}"
        self.gate: torch.Tensor | None = None
        self.scale = 1.0
        self._attached_to = []  # a plain list: registering G as a submodule would make it our parameters
        self._handles = []

    def _delta(self, key: str, x: torch.Tensor) -> torch.Tensor:
        a = self.A[key]
        return (x.to(a.dtype) @ a.T @ self.B[key].T).to(x.dtype)

    def attach(self, transformer) -> "LoraAdapter":
        if target_paths(transformer) != self.paths or transformer.config.hidden_size != self.dim:
            raise ValueError(f"LoRA adapter was built for {len(self.paths)} projections of width {self.dim}; "
                             f"this transformer does not match")
        config = LoraConfig(r=self.cfg.rank, lora_alpha=self.cfg.rank, lora_dropout=0.0,
                            target_modules=list(self.paths))
        with warnings.catch_warnings():  # a second adapter on one G is intended (style + subject)
            warnings.simplefilter("ignore")
            inject_adapter_in_model(config, transformer, adapter_name=self.name)
        for path in self.paths:
            layer, key = transformer.get_submodule(path), path.replace(".", "__")
            layer.lora_A[self.name].weight = self.A[key]
            layer.lora_B[self.name].weight = self.B[key]
            # injecting may have switched off an adapter attached before this one: keep them all active
            layer.set_adapter([name for name in layer.lora_A if name.startswith("styledrop_lora_")])
            self._handles.append(layer.register_forward_hook(self._gate_hook(key)))
        self._attached_to.append(transformer)
        return self

    def _gate_hook(self, key):
        def hook(module, inputs, out):
            if self.gate is None and self.scale == 1.0:
                return out
            keep = torch.ones(out.shape[0]) if self.gate is None else self.gate
            keep = keep.to(out.device, out.dtype)
            factor = (keep * self.scale - 1).view(-1, *([1] * (out.dim() - 1)))
            return out + factor * self._delta(key, inputs[0])
        return hook

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        for model in self._attached_to:
            for path in self.paths:
                model.get_submodule(path).delete_adapter(self.name)
            getattr(model, "peft_config", {}).pop(self.name, None)
        self._attached_to, self._handles = [], []

    def meta(self) -> dict:
        return {"adapter": asdict(self.cfg), "dim": self.dim, "sites": self.n_sites}
