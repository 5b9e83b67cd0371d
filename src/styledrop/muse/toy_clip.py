"""The toy base's CLIP: transformers' CLIPModel, optionally with a small CNN as its image tower.

A tiny ViT (8-px patches, width 128, 3 layers) learns colour within a few hundred steps and the object's shape
not at all: trained supervised on the 13 pretraining contents it stays at chance (2.56 nats) for 200 steps of
96, where a five-block CNN of 100k parameters reaches 0.65 (docs/experiments.md, CLIP). ``vision_tower: "conv"``
in the CLIPConfig swaps the ViT for such a CNN, with the same interface (``vision_model(pixel_values).
pooler_output``, then ``visual_projection``), so the scorer, the folder format and ``from_pretrained`` stay
CLIP's. The text tower (T for G) is untouched. A folder without the key loads as a plain CLIPModel.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from transformers import CLIPConfig, CLIPModel
from transformers.modeling_outputs import BaseModelOutputWithPooling

CONV = "conv"


class ConvImageTower(nn.Module):
    """Stride-2 conv blocks down to 2x2 then a global average pool: (B, 3, 64, 64) -> pooler_output (B, width)."""

    def __init__(self, width: int, image_size: int = 64):
        super().__init__()
        blocks = max(1, (image_size // 2).bit_length() - 1)  # 64 px: 5 halvings, to 2x2
        chans = [3] + [min(width, 32 * 2 ** k) for k in range(blocks)]
        layers = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.out = nn.Linear(chans[-1], width)

    def forward(self, pixel_values: torch.Tensor, **_) -> BaseModelOutputWithPooling:
        pooled = self.out(self.features(pixel_values).mean((2, 3)))
        return BaseModelOutputWithPooling(pooler_output=pooled)


class ToyCLIPModel(CLIPModel):
    """CLIPModel whose image tower is a ``ConvImageTower`` when ``config.vision_tower == "conv"``."""

    def __init__(self, config: CLIPConfig):
        super().__init__(config)
        if getattr(config, "vision_tower", None) == CONV:
            vc = config.vision_config
            self.vision_model = ConvImageTower(vc.hidden_size, vc.image_size)
            self.post_init()
            # CLIP's own init draws these convs at std ~1 (its patch-embedding rule), and then the tower learns
            # nothing (2.5 nats after 150 steps where PyTorch's default init reaches 0.43): use the default.
            for module in self.vision_model.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()


def load_clip(folder, **kwargs) -> CLIPModel:
    """A CLIP stage or ``clip_scorer/`` folder, with either image tower."""
    return ToyCLIPModel.from_pretrained(folder, **kwargs)
