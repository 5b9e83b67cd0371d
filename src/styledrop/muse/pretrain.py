"""``styledrop pretrain``: build the tiny base from scratch, VQ -> tokenizer + CLIP -> G.

Every stage checkpoints into ``work`` and a finished stage is saved there and skipped on a
re-run, so an interrupted pretraining resumes where it stopped. The finished base is written
in aMUSEd's layout to a temporary folder and renamed onto ``out`` at the end.
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from transformers import CLIPModel, CLIPTextModelWithProjection, CLIPTokenizer

from ..io import UserError, load_tensors, read_json, save_tensors, write_json
from . import transformer as tr
from .base import MuseBase, load_transformer
from .stages import check_recipe
from .text import build_tokenizer
from .toy_clip import load_clip
from .train_clip import ClipTrainConfig, train_clip
from .train_transformer import TransformerTrainConfig, token_dataset, train_transformer
from .train_vq import VQTrainConfig, merge_vq, train_vq
from .vq import TinyVQModel


@dataclass(frozen=True)
class PretrainConfig:
    vq: VQTrainConfig = field(default_factory=VQTrainConfig)
    clip: ClipTrainConfig = field(default_factory=ClipTrainConfig)
    transformer: TransformerTrainConfig = field(default_factory=TransformerTrainConfig)

    @classmethod
    def preset(cls, name: str) -> "PretrainConfig":
        """``v1``: the shipped base; ``v2``: encoders that have seen the style space (pretrained_stages/);
        ``v3``: v2's encoders, the VQ merged into 256 codes, and G trained for 16500 steps."""
        if name not in PRESETS:
            raise ValueError(f"unknown recipe {name!r}; expected one of {', '.join(PRESETS)}")
        return PRESETS[name]


STAGES = ("vq", "clip", "transformer")
STAGE_RECIPE = "styledrop_stage.json"  # in a finished stage folder: the recipe that made it
UNMERGED = "vqvae_unmerged"  # the VQ before its codebook is merged (VQTrainConfig.merge), in the work folder


def other_recipes(reuse: Path, recipes: dict[str, dict]) -> list[str]:
    """The stage folders in ``reuse`` (``vqvae``, ``clip``) made under another recipe than ``recipes`` asks."""
    out = []
    for part, expected in recipes.items():
        made = recorded_recipe(vq_source(reuse, recipes) if part == "vqvae" else reuse / part)
        if made is not None and _without_steps(made) != expected:
            out.append(part)
    return out


def vq_source(reuse: Path, recipes: dict[str, dict]) -> Path:
    """``reuse``'s VQ: ``vqvae_<N>/`` when the recipe merges the codebook into N codes and that folder was made under
    it (pretrained_stages/vqvae_256: the merge done once, so G sees the same tokens on every machine), else
    ``vqvae/``."""
    merge = (recipes.get("vqvae") or {}).get("merge")
    made = recorded_recipe(reuse / f"vqvae_{merge}") if merge else None
    if made is not None and _without_steps(made) == recipes["vqvae"]:
        return reuse / f"vqvae_{merge}"
    return reuse / "vqvae"


def seed_work(work: Path, reuse: Path, recipes: dict[str, dict] | None = None) -> list[str]:
    """Copy finished stages (vqvae/, tokenizer/ + clip/) from ``reuse`` into ``work``; they are then skipped.

    ``reuse`` may also be a finished base folder, whose ``clip_scorer/`` is the whole CLIP of stage 2.
    ``recipes`` (stage -> recipe): a stage made under another recipe is not copied (it is trained instead);
    ``recipes[UNMERGED]``: the recipe of the VQ before merging, under which ``reuse``'s VQ is copied to be merged."""
    skip = set(other_recipes(reuse, recipes or {}))
    skip |= {"tokenizer"} if "clip" in skip else set()  # a CLIP's tokenizer goes with it
    copied = []
    vq = vq_source(reuse, recipes or {}).name
    for part, source in (("vqvae", vq), ("tokenizer", "tokenizer"), ("clip", "clip"), ("clip", "clip_scorer")):
        if part in skip:
            continue
        if (reuse / source).is_dir() and not (work / part).exists():
            shutil.copytree(reuse / source, work / part)
            copied.append(part)
    # a VQ to be merged may start from a finished VQ of the same recipe before merging
    made, wanted = recorded_recipe(reuse / "vqvae"), (recipes or {}).get(UNMERGED)
    if "vqvae" in skip and wanted and made is not None and _without_steps(made) == wanted \
            and not (work / UNMERGED).exists():
        shutil.copytree(reuse / "vqvae", work / UNMERGED)
        copied.append(UNMERGED)
    return copied


def pretrain(cfg: PretrainConfig, out: Path, work: Path, progress=None, only: str | None = None,
             device="cpu", compile: bool = False) -> MuseBase | None:
    """``progress(stage, done, total, losses)`` is called as each stage goes. ``device``: where the
    transformer stage (tokenizing its pictures, then G) runs; the VQ and CLIP stages run on the CPU.
    ``compile``: train G through ``torch.compile`` (faster for long runs; the first steps wait for the compiler).

    ``only="vq"`` or ``only="clip"`` runs just that stage (the two are independent and can run
    in two processes at once); anything else runs whatever is not finished yet, then assembles.
    """
    work.mkdir(parents=True, exist_ok=True)

    def tick(stage):
        return (lambda i, n, losses: progress(stage, i, n, losses)) if progress else None

    vq_dir = work / "vqvae"
    vq_ckpt, clip_ckpt, g_ckpt = (work / f"{name}.ckpt.safetensors" for name in STAGES)
    if only in (None, "vq") and not finished(vq_dir, cfg.vq.recipe(), cfg.vq.steps, vq_ckpt):
        full, full_dir = cfg.vq.unmerged(), work / UNMERGED if cfg.vq.merge else vq_dir
        if not finished(full_dir, full.recipe(), full.steps, vq_ckpt):
            save_stage(train_vq(full, vq_ckpt, tick("vq")), full_dir, full.recipe(), full.steps)
        if cfg.vq.merge:
            unmerged = TinyVQModel.from_pretrained(full_dir, torch_dtype=torch.float32).eval()
            # the steps the unmerged VQ had: none recorded when it was reused (it then stays reusable at any steps)
            save_stage(merge_vq(unmerged, cfg.vq), vq_dir, cfg.vq.recipe(), stage_steps(full_dir))
    tok_dir, clip_dir = work / "tokenizer", work / "clip"
    if only in (None, "clip") and not finished(clip_dir, cfg.clip.recipe(), cfg.clip.steps, clip_ckpt):
        tokenizer = build_tokenizer(space=cfg.clip.space > 0)
        tokenizer.save_pretrained(tok_dir)
        clip = train_clip(cfg.clip, tokenizer, clip_ckpt, tick("clip"))
        save_stage(clip, clip_dir, cfg.clip.recipe(), cfg.clip.steps)
    if only in ("vq", "clip"):
        return None
    finished(vq_dir, cfg.vq.recipe())
    finished(clip_dir, cfg.clip.recipe())

    vq = TinyVQModel.from_pretrained(vq_dir, torch_dtype=torch.float32).eval()
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    clip = load_clip(clip_dir, dtype=torch.float32).eval()
    text_encoder = text_encoder_of(clip, random=cfg.transformer.text_encoder == "random")

    data, g_cfg = work / "tokens.safetensors", cfg.transformer
    recipe = g_cfg.data_recipe()
    tensors, header = load_tensors(data) if data.is_file() else ({}, {})
    if header.get("recipe") != recipe:  # none yet, or made for another recipe: tokenize anew
        tokens, meta = token_dataset(vq.to(device), g_cfg.images, g_cfg.seed, progress=tick("tokenize"),
                                     pose=g_cfg.pose, varied=g_cfg.varied, space=g_cfg.space)
        vq.cpu()
        save_tensors(data, {"tokens": tokens}, {"meta": meta, "recipe": recipe})
        tensors, header = {"tokens": tokens}, {"meta": meta}
    tokens, meta = tensors["tokens"], [tuple(m) for m in header["meta"]]

    g_dir = work / "transformer"
    if not finished(g_dir, g_cfg.recipe(), g_cfg.steps, g_ckpt):
        g = train_transformer(g_cfg, vq, text_encoder, tokenizer, tokens, meta, g_ckpt, tick("transformer"), device,
                              compile)
        save_stage(g, g_dir, g_cfg.recipe(), g_cfg.steps)
    g = load_transformer(g_dir)
    base = MuseBase(tokenizer, text_encoder, vq, g, tr.mask_token_id(g), scorer=clip)

    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    base.save(tmp)
    write_json(tmp / "styledrop_pretrain.json", {"config": asdict(cfg)})
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return MuseBase.load(out)


def finished(folder: Path, recipe: dict, steps: int | None = None, ckpt: Path | None = None) -> bool:
    """Whether a stage is done in ``folder`` at ``steps``; one made under another recipe is refused, naming what
    differs. A stage finished at fewer steps is not done: more steps train it on from ``ckpt`` (without this, a
    longer ``--vq-steps``/``--g-steps`` silently reused the shorter stage). Fewer steps than were trained cannot be
    undone and are refused, as are more steps without the checkpoint to go on from. A stage saved before stages
    kept their steps is trusted at any steps."""
    if not (folder / "config.json").is_file():
        return False
    made = recorded_recipe(folder)
    check_recipe(f"finished stage {folder}", None if made is None else _without_steps(made), recipe)
    done = (made or {}).get("steps")
    if steps is None or done is None or done == steps:
        return True
    if done > steps:
        raise UserError(f"finished stage {folder} was trained for {done} steps, more than the {steps} asked: "
                        f"ask for at least {done} or use another work folder")
    if ckpt is None or not ckpt.is_file():
        raise UserError(f"finished stage {folder} was trained for {done} steps; training it on to {steps} needs its "
                        f"checkpoint {ckpt}, which is missing: ask for {done} steps or use another work folder")
    return False


def recorded_recipe(folder: Path) -> dict | None:
    """The recipe (and steps, if kept) a finished stage recorded; None for one saved before recipes were kept."""
    made = folder / STAGE_RECIPE
    return read_json(made)["recipe"] if made.is_file() else None


def stage_steps(folder: Path) -> int | None:
    """The steps a finished stage recorded (None for a stage kept to be reused, or saved before steps were kept)."""
    return (recorded_recipe(folder) or {}).get("steps")


def _without_steps(recipe: dict) -> dict:
    return {k: v for k, v in recipe.items() if k != "steps"}


def save_stage(model, folder: Path, recipe: dict, steps: int | None = None, dtype=None) -> None:
    """A finished stage in diffusers/transformers' folder format, with the recipe and steps that made it
    (``steps=None``: a stage to be reused as it is, such as pretrained_stages/, at any steps asked)."""
    (model.to(dtype) if dtype else model).save_pretrained(folder)
    write_json(folder / STAGE_RECIPE, {"recipe": _without_steps(recipe) | ({} if steps is None else {"steps": steps})})


def text_encoder_of(clip: CLIPModel, random: bool = False, seed: int = 11) -> CLIPTextModelWithProjection:
    """The text tower and its projection of a CLIPModel, as the CLIPTextModelWithProjection aMUSEd uses
    (``random``: one of the same shape, freshly initialised from ``seed``, that keeps every word apart)."""
    config = copy.deepcopy(clip.config.text_config)
    config.projection_dim = clip.config.projection_dim
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        te = CLIPTextModelWithProjection(config)
    if not random:
        te.text_model.load_state_dict(clip.text_model.state_dict())
        te.text_projection.load_state_dict(clip.text_projection.state_dict())
    return te.eval()


PRESETS = {
    "v1": PretrainConfig(),
    # 16x16 tokens, a wider codec and 4x the codes, on half named styles / half style space; a CLIP with a CNN image
    # tower and a content-naming head, so that it sees shapes (style-space words as single tokens); G with one
    # transformer position per token: UVit2D's down/upsampling drew one blob for every object (docs/experiments.md)
    "v2": PretrainConfig(vq=VQTrainConfig(steps=6000, levels=2, channels=64, codebook_size=4096, space=0.5,
                                            finetune_steps=3000),
                         clip=ClipTrainConfig(steps=5000, space=0.5, content_only=0.4, tower="conv", content_head=1.0),
                         transformer=TransformerTrainConfig(steps=5000, batch=32, hidden=128, layers=4, channels=64,
                                                            downsample=False, space=0.5)),
}
# v3: v2's encoders with the VQ's codebook merged into 256 codes (fewer, easier tokens for G) and v2's G trained for
# 16500 steps under one cosine schedule (v2's 16500-step G was five cosine legs; docs/experiments.md)
PRESETS["v3"] = PretrainConfig(vq=replace(PRESETS["v2"].vq, merge=256), clip=PRESETS["v2"].clip,
                               transformer=replace(PRESETS["v2"].transformer, steps=16500))
