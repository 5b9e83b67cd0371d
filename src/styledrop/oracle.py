"""Toy-world oracles: small CNN classifiers for content and for style, trained on ground truth.

They are the measuring stick of every evaluation: "is this a fish?", "is this neon glow?".
Both know all classes, held-out ones included. Trained on an endless stream of fresh
renders (no image is seen twice), with light blur and noise so that the slightly soft
images a generator makes are judged fairly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import world
from .io import load_tensors, save_tensors

ORACLE_PATH = Path(__file__).parent / "assets" / "oracle.safetensors"
# The space-aware second judge (`styledrop oracle train --space 0.15`): it may answer "space" where the shipped
# one must name some style, so a yellow ground alone is not "pop art" to it (docs/experiments.md, v3 hard regime).
SPACE_ORACLE_PATH = Path(__file__).parent / "assets" / "oracle_space.safetensors"


def oracle_path(name: str | Path) -> Path:
    """``shipped``, ``space`` (the space-aware judge) or a file of oracles."""
    return {"shipped": ORACLE_PATH, "space": SPACE_ORACLE_PATH}.get(str(name), Path(name))
TEST_SEED = 1_000_003  # fresh test images: a seed no training stream uses


class OracleNet(nn.Module):
    """Five stride-2 conv blocks, global average pool, linear head. (B,3,64,64) -> (B,classes)."""

    def __init__(self, *, classes: int, width: int = 16):
        super().__init__()
        chans = [3, width, width * 2, width * 4, width * 4, width * 4]
        layers = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1),
                       nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(chans[-1], classes)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


def to_tensor(images: np.ndarray | list[np.ndarray]) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1], the layout every model here takes."""
    x = torch.from_numpy(np.ascontiguousarray(np.stack(list(images))))
    return x.permute(0, 3, 1, 2).float().div(127.5).sub(1)


def to_images(x: torch.Tensor) -> np.ndarray:
    """The inverse of ``to_tensor``: float (B, 3, H, W) in [-1, 1] -> uint8 (B, H, W, 3) on the CPU."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5 + 0.5).byte().permute(0, 2, 3, 1).cpu().numpy()


@dataclass(frozen=True)
class OracleConfig:
    steps: int = 2000
    batch: int = 96
    lr: float = 2e-3
    width: int = 16
    seed: int = 0
    # Fraction of each batch from the style space on open grounds, its own style class "space" (content labelled as
    # usual): a new look is then judged "some look" rather than the nearest named style (held-out ones included)
    space: float = 0.0


SPACE_CLASS = "space"


class Oracles:
    """The pair of classifiers, with the class names they predict."""

    def __init__(self, content: OracleNet, style: OracleNet, style_names: list[str] | None = None):
        self.content, self.style = content.eval(), style.eval()
        self.style_names = list(style_names or world.STYLE_NAMES)  # + "space" for an oracle trained with it

    @classmethod
    def load(cls, path=ORACLE_PATH) -> "Oracles":
        tensors, meta = load_tensors(path)
        names = {"content": world.CONTENTS, "style": meta.get("styles", world.STYLE_NAMES)}
        nets = {}
        for kind in ("content", "style"):
            net = OracleNet(classes=len(names[kind]), width=meta["width"])
            net.load_state_dict({k[len(kind) + 1:]: v for k, v in tensors.items() if k.startswith(kind + ".")})
            nets[kind] = net
        return cls(nets["content"], nets["style"], names["style"])

    def save(self, path, meta: dict) -> None:
        tensors = {f"content.{k}": v for k, v in self.content.state_dict().items()}
        tensors |= {f"style.{k}": v for k, v in self.style.state_dict().items()}
        save_tensors(path, tensors, meta)

    @torch.no_grad()
    def probs(self, images: list[np.ndarray], batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """Class probabilities (N, contents) and (N, styles) for uint8 (H, W, 3) images."""
        pc, ps = [], []
        for i in range(0, len(images), batch):
            x = self._at_world_size(to_tensor(images[i:i + batch]))
            pc.append(self.content(x).softmax(-1))
            ps.append(self.style(x).softmax(-1))
        return torch.cat(pc), torch.cat(ps)

    @torch.no_grad()
    def features(self, images: list[np.ndarray], batch: int = 256) -> np.ndarray:
        """Both nets' pooled penultimate activations, (N, 2 * width * 4): what the toy FID compares."""
        out = []
        for i in range(0, len(images), batch):
            x = self._at_world_size(to_tensor(images[i:i + batch]))
            out.append(torch.cat([self.content.features(x).mean((2, 3)), self.style.features(x).mean((2, 3))], 1))
        return torch.cat(out).numpy().astype(np.float64)

    @staticmethod
    def _at_world_size(x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (world.SIZE, world.SIZE):  # images of another base: judged at the world's size
            x = F.interpolate(x, size=(world.SIZE, world.SIZE), mode="bilinear", antialias=True)
        return x

    def classify(self, images: list[np.ndarray]) -> list[dict]:
        pc, ps = self.probs(images)
        out = []
        for c, s in zip(pc, ps):
            ci, si = int(c.argmax()), int(s.argmax())
            out.append({"content": world.CONTENTS[ci], "content_prob": round(float(c[ci]), 4),
                        "style": self.style_names[si], "style_prob": round(float(s[si]), 4)})
        return out

    def accuracy(self, samples: list[world.Sample]) -> dict:
        preds = self.classify([s.image for s in samples])
        n = len(samples)
        return {
            "content_acc": sum(p["content"] == s.content for p, s in zip(preds, samples)) / n,
            "style_acc": sum(p["style"] == s.style for p, s in zip(preds, samples)) / n,
            "n": n,
        }


def test_set(n: int = 2000, seed: int = TEST_SEED) -> list[world.Sample]:
    """Fresh seeded renders over every (content, style) pair, held-out ones included."""
    return world.batch(n, seed, world.pairs())


def variant_check(oracles: "Oracles", n: int = 400, seed: int = TEST_SEED) -> dict:
    """How well the style oracle tells each held-out variant from its parent, on fresh renders of both:
    {variant: {"variant_acc": called the variant, "parent_acc": the parent's renders called the parent}}."""
    out = {}
    for variant, parent in world.styles.VARIANT_OF.items():
        row = {}
        for key, style in (("variant_acc", variant), ("parent_acc", parent)):
            samples = world.batch(n, seed, [(c, style) for c in world.CONTENTS])
            row[key] = oracles.accuracy(samples)["style_acc"]
        out[variant] = row
    return out


def space_check(oracles: "Oracles", n: int = 500, seed: int = TEST_SEED) -> dict:
    """On fresh renders of the style space on open grounds: the share the style oracle calls ``space``, and the
    share it calls a held-out style or variant (what would count as a held-out look where there is none)."""
    samples = [world.open_look_sample(k, seed, world.choose_pairs(None, world.SPACE)) for k in range(n)]
    preds = oracles.classify([s.image for s in samples])
    held = set(world.HELDOUT_STYLES) | set(world.HELDOUT_VARIANTS)
    return {"space_acc": float(np.mean([p["style"] == SPACE_CLASS for p in preds])),
            "called_held_out": float(np.mean([p["style"] in held for p in preds])),
            "content_acc": float(np.mean([p["content"] == s.content for p, s in zip(preds, samples)])), "n": n}


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Mild blur on some images and pixel noise on all: generated images are a bit soft."""
    b = x.shape[0]
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    pick = (torch.rand(b, 1, 1, 1, generator=g) < 0.3).float()
    x = x * (1 - pick) + blurred * pick
    return x + torch.randn(x.shape, generator=g) * torch.rand(b, 1, 1, 1, generator=g) * 0.06


def train(cfg: OracleConfig, progress=None) -> Oracles:
    """Train both classifiers on the same endless stream of fresh renders."""
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    names = list(world.STYLE_NAMES) + ([SPACE_CLASS] if cfg.space else [])
    content = OracleNet(classes=len(world.CONTENTS), width=cfg.width)
    style = OracleNet(classes=len(names), width=cfg.width)
    params = list(content.parameters()) + list(style.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / cfg.steps)))
    all_pairs = world.pairs()
    ci = {c: i for i, c in enumerate(world.CONTENTS)}
    si = {s: i for i, s in enumerate(names)} | ({world.SPACE: names.index(SPACE_CLASS)} if cfg.space else {})
    looks = world.choose_pairs(None, world.SPACE)  # every content, on any ground

    def picture(k):
        if int((k + 1) * cfg.space) > int(k * cfg.space):  # spread evenly
            return world.open_look_sample(k, cfg.seed, looks)
        return world.sample(k, cfg.seed, all_pairs)

    for step in range(cfg.steps):
        samples = [picture(step * cfg.batch + k) for k in range(cfg.batch)]
        x = _augment(to_tensor([s.image for s in samples]), g)
        yc = torch.tensor([ci[s.content] for s in samples])
        ys = torch.tensor([si[s.style] for s in samples])
        loss_c = F.cross_entropy(content(x), yc)
        loss_s = F.cross_entropy(style(x), ys)
        opt.zero_grad(set_to_none=True)
        (loss_c + loss_s).backward()
        opt.step()
        sched.step()
        if progress:
            progress(step + 1, cfg.steps, {"content_loss": loss_c.item(), "style_loss": loss_s.item()})
    return Oracles(content, style, names)


def train_and_save(cfg: OracleConfig, path=ORACLE_PATH, n_test: int = 2000, progress=None) -> dict:
    oracles = train(cfg, progress)
    acc = oracles.accuracy(test_set(n_test))
    if SPACE_CLASS in oracles.style_names:
        acc["space"] = space_check(oracles, n_test // 4)
    oracles.save(path, {"width": cfg.width, "config": asdict(cfg), "test": acc,
                        "contents": world.CONTENTS, "styles": oracles.style_names})
    return acc
