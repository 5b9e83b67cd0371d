"""The base model (Muse): tokenizer, text encoder T, VQ tokenizer, transformer G, in aMUSEd's layout.

A base folder is what diffusers' aMUSEd models look like on disk::

    model_index.json
    transformer/   UVit2DModel            (config.json + diffusion_pytorch_model.safetensors)
    vqvae/         VQModel | TinyVQModel  (the class is named by model_index.json / config.json)
    text_encoder/  CLIPTextModelWithProjection
    tokenizer/     CLIPTokenizer
    scheduler/     AmusedScheduler        (mask token id, masking schedule)

The tiny embedded base adds ``clip_scorer/`` (the whole CLIP, for CLIP-T / CLIP-I scores).
The same ``MuseBase.load`` reads the embedded base and a real amused-256/512 folder.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import AmusedScheduler, UVit2DModel, VQModel
from diffusers.utils import logging as diffusers_logging
from safetensors import SafetensorError, safe_open
from transformers import CLIPModel, CLIPTextModelWithProjection, CLIPTokenizer

from ..io import UserError, write_json
from . import folders
from . import transformer as tr
from .text import encode_text
from .toy_clip import load_clip
from .vq import DiffusersVQ, TinyVQModel

DEFAULT_BASE = Path(__file__).resolve().parent.parent / "assets" / "base"
PARTS = ("transformer", "vqvae", "text_encoder", "tokenizer", "scheduler")
WEIGHTS = {"transformer": "diffusion_pytorch_model", "vqvae": "diffusion_pytorch_model", "text_encoder": "model"}
SHARD_MB = 16  # the largest weight file a saved base writes


@dataclass
class MuseBase:
    tokenizer: CLIPTokenizer
    text_encoder: CLIPTextModelWithProjection
    vq: TinyVQModel | DiffusersVQ
    transformer: UVit2DModel
    mask_id: int
    path: Path | None = None
    scorer: CLIPModel | None = None
    _uncond: dict = field(default_factory=dict, repr=False)
    _ids: dict = field(default_factory=dict, repr=False)  # base id per folder: hashing G reads every weight
    _compiled: torch.nn.Module | None = field(default=None, repr=False)

    @property
    def image_size(self) -> int:
        return self.transformer.config.sample_size * self.vq.scale

    @property
    def grid(self) -> int:
        return self.transformer.config.sample_size

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.transformer.parameters()).dtype

    @property
    def knows_world(self) -> bool:
        """Whether G is the tiny base's (trained on the toy world: its position table, 64-px pictures), so that
        the world's oracles can judge what it draws; a real aMUSEd folder is not."""
        return getattr(self.transformer, "pos_embed", None) is not None and self.image_size == 64

    def model_id(self) -> str:
        """A short fingerprint of the transformer's weights: adapters record which base they fit."""
        if not self.path:
            return "unsaved"
        if self.path not in self._ids:
            self._ids[self.path] = base_fingerprint(self.path)
        return self._ids[self.path]

    def encode_text(self, prompts: list[str]):
        return encode_text(self.text_encoder, self.tokenizer, prompts)

    def encode_empty(self, batch: int):
        """Text embedding of the empty prompt (the unconditional branch of guidance), cached."""
        if "" not in self._uncond:
            self._uncond[""] = encode_text(self.text_encoder, self.tokenizer, [""], allow_empty=True)
        h, p = self._uncond[""]
        return h.expand(batch, -1, -1), p.expand(batch, -1)

    def compile(self) -> "MuseBase":
        """Run G's forward passes (``self.net``) through ``torch.compile`` from now on: fused kernels, about
        1.2x per training step and per sampling step on 2 CPU cores (docs/benchmarks.md), after a one-off
        compile of 30-90 s on CPU (cached on disk). Outputs match eager mode up to float rounding.

        Adapters attach to G with forward hooks, and dynamo by default ignores hooks added after compiling
        (the old graph would run without the adapter, silently); guarding them makes every attach or
        detach recompile instead."""
        torch._dynamo.config.skip_nnmodule_hook_guards = False
        self._compiled = torch.compile(self.transformer, dynamic=False)
        return self

    @property
    def net(self) -> torch.nn.Module:
        """G as forward passes call it: compiled after ``compile()``, else the module itself."""
        return self.transformer if self._compiled is None else self._compiled

    def eval(self) -> "MuseBase":
        for m in (self.text_encoder, self.vq, self.transformer):
            m.eval().requires_grad_(False)
        return self

    # ------------------------------------------------------------------ disk

    def save(self, path: Path, dtype=torch.float16, shard_mb: int = SHARD_MB) -> None:
        """Write the aMUSEd layout. Weights are stored in ``dtype`` (half by default: the shipped base
        must stay small) and cast back to float32 on load. A part over ``shard_mb`` is split into files of at
        most that size with an index, as the hub does (a wider G trained on a GPU stays committable)."""
        path = Path(path)
        vq = self.vq.vq if isinstance(self.vq, DiffusersVQ) else self.vq
        parts = [(self.transformer, "transformer"), (vq, "vqvae"), (self.text_encoder, "text_encoder")]
        if self.scorer is not None:
            parts.append((self.scorer, "clip_scorer"))
        for module, name in parts:  # transformer includes pos_embed.weight when attached
            original = next(module.parameters()).dtype
            module.to(dtype).save_pretrained(path / name, max_shard_size=f"{shard_mb}MB")
            module.to(original)
        self.tokenizer.save_pretrained(path / "tokenizer")
        AmusedScheduler(mask_token_id=self.mask_id, masking_schedule="cosine").save_pretrained(path / "scheduler")
        write_json(path / "model_index.json", {
            "_class_name": "AmusedPipeline",
            "scheduler": ["diffusers", "AmusedScheduler"],
            "text_encoder": ["transformers", "CLIPTextModelWithProjection"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "transformer": ["diffusers", "UVit2DModel"],
            "vqvae": ["styledrop" if isinstance(vq, TinyVQModel) else "diffusers", type(vq).__name__],
        })

    @classmethod
    def load(cls, path: Path | str | None = None, device: str = "cpu", dtype=torch.float32) -> "MuseBase":
        path = Path(path) if path else DEFAULT_BASE
        check_layout(path)
        for part, stem in WEIGHTS.items():  # whole weights first: a broken download fails here, before any work
            folders.check_weights(folders.weight_files(path / part, stem))
        try:
            tokenizer = CLIPTokenizer.from_pretrained(path / "tokenizer")
            folders.check_tokenizer(tokenizer, path / "tokenizer")
            text_encoder = CLIPTextModelWithProjection.from_pretrained(
                path / "text_encoder", dtype=dtype, variant=folders.variant(path / "text_encoder", "model"))
            vq = load_vq(path / "vqvae", dtype)
            transformer = load_transformer(path / "transformer", dtype)
            sched = json.loads((path / "scheduler" / "scheduler_config.json").read_text())
        except UserError:
            raise
        except (OSError, ValueError, KeyError, json.JSONDecodeError, RuntimeError, SafetensorError) as e:
            raise UserError(f"cannot load base model from {path}: {str(e).splitlines()[0][:300]}") from None
        scorer = None
        if (path / "clip_scorer" / "config.json").is_file():
            scorer = load_clip(path / "clip_scorer", dtype=dtype).eval().to(device)
        base = cls(tokenizer, text_encoder, vq, transformer, int(sched["mask_token_id"]), path, scorer)
        base.text_encoder.to(device)
        base.vq.to(device)
        base.transformer.to(device)
        return base.eval()


def load_vq(folder: Path, dtype=torch.float32):
    """The VQ tokenizer of a ``vqvae/`` folder: ours (TinyVQModel) or diffusers' VQModel, by its config."""
    vq_cls = json.loads((folder / "config.json").read_text()).get("_class_name", "VQModel")
    # aMUSEd's VQ-GAN overflows to NaN in float16 (its model card says so): it alone stays fp32 then
    vq_dtype = torch.float32 if dtype == torch.float16 else dtype
    v = folders.variant(folder, "diffusion_pytorch_model")
    if vq_cls == "TinyVQModel":
        return TinyVQModel.from_pretrained(folder, torch_dtype=vq_dtype, variant=v)
    if vq_cls == "VQModel":
        return DiffusersVQ(VQModel.from_pretrained(folder, torch_dtype=vq_dtype, variant=v))
    raise UserError(f"{folder}: unknown VQ class {vq_cls!r}; expected VQModel or TinyVQModel")


def check_layout(path: Path) -> None:
    """Refuse, naming what is missing, anything that is not an aMUSEd-layout folder."""
    if not path.is_dir():
        raise UserError(f"base model folder not found: {path}")
    if not (path / "model_index.json").is_file():
        raise UserError(f"{path} is not an aMUSEd-layout model folder: no model_index.json "
                        f"(expected {', '.join(PARTS)} subfolders and model_index.json)")
    missing = [p for p in PARTS if not (path / p).is_dir()]
    if missing:
        raise UserError(f"{path} is not an aMUSEd-layout model folder: missing {', '.join(missing)}/")
    for part, name in (("transformer", "config.json"), ("vqvae", "config.json"),
                       ("text_encoder", "config.json"), ("scheduler", "scheduler_config.json")):
        if not (path / part / name).is_file():
            raise UserError(f"{path / part} has no {name}")


def load_transformer(folder: Path | str, dtype=torch.float32) -> UVit2DModel:
    """UVit2DModel, with the tiny base's position table re-attached when the weights carry one."""
    folder = Path(folder)
    pos = _position_table(folder)
    level = diffusers_logging.get_verbosity()
    if pos is not None:  # diffusers would warn that pos_embed.weight is unused: it is attached below
        diffusers_logging.set_verbosity_error()
    try:
        transformer = UVit2DModel.from_pretrained(folder, torch_dtype=dtype,
                                                  variant=folders.variant(folder, "diffusion_pytorch_model"))
    finally:
        diffusers_logging.set_verbosity(level)
    if pos is not None:
        tr.add_position_embedding(transformer, pos.shape[-1], pos.to(dtype))
    return transformer


def _position_table(folder: Path) -> torch.Tensor | None:
    """The tiny base's position table, or None (also for a missing or unreadable file: from_pretrained names it)."""
    try:
        for f in folders.weight_files(folder, "diffusion_pytorch_model"):
            with safe_open(str(f), "pt") as st:
                if tr.POS_KEY in st.keys():
                    return st.get_tensor(tr.POS_KEY)
    except (OSError, SafetensorError, UserError):
        return None
    return None


def base_fingerprint(path: Path) -> str:
    """Hash of the transformer's architecture and weights: an adapter records the base it was trained on.

    Only what defines G enters it (config values, not the library versions saved beside them; tensors in half
    precision, from the files G is loaded from), so the same G saved again, once in fp32 and once in fp16, or
    downloaded with or without hub's extra ``.fp16`` files, whole or in shards, keeps its id."""
    h = hashlib.sha256()
    folder = Path(path) / "transformer"
    config = json.loads((folder / "config.json").read_text())
    h.update(json.dumps({k: v for k, v in config.items() if not k.startswith("_")}, sort_keys=True).encode())
    where = {}  # every tensor's file: sorted over all of them, so that sharding does not change the id
    for f in folders.weight_files(folder, "diffusion_pytorch_model"):
        with safe_open(f, framework="pt") as st:
            where |= {key: f for key in st.keys()}
    for key in sorted(where):
        with safe_open(where[key], framework="pt") as st:
            h.update(key.encode())
            h.update(st.get_tensor(key).to(torch.float16).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]
