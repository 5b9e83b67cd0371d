"""The base's eyes: the v2 stages' recipes and `styledrop evaluate tokenizer|clip|space`."""

import json
from dataclasses import replace

import numpy as np
import pytest

from styledrop.io import UserError
from styledrop.muse.pretrain import PretrainConfig, pretrain

from .tiny import TINY, amused_like_folder

SPACE_TINY = replace(TINY, vq=replace(TINY.vq, space=0.5, levels=2), clip=replace(TINY.clip, space=0.5))


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    work = tmp_path_factory.mktemp("stages")
    pretrain(SPACE_TINY, work / "unused", work, only="vq")
    pretrain(SPACE_TINY, work / "unused", work, only="clip")
    return work


def test_v2_stages_record_their_recipe_and_refuse_another(stages):
    made = json.loads((stages / "vqvae" / "styledrop_stage.json").read_text())["recipe"]
    assert made["space"] == 0.5 and made["levels"] == 2
    # the style-space words are single tokens of the v2 tokenizer
    from transformers import CLIPTokenizer
    tok = CLIPTokenizer.from_pretrained(stages / "tokenizer")
    assert tok.tokenize("dotted checkered mottled pixelated") == ["dotted</w>", "checkered</w>", "mottled</w>",
                                                                 "pixelated</w>"]
    with pytest.raises(UserError, match=r"stage .*vqvae was made with another recipe \(levels, space differ\)"):
        pretrain(TINY, stages / "unused", stages, only="vq")


def test_presets_name_the_recipes():
    assert PretrainConfig.preset("v1") == PretrainConfig()
    v2 = PretrainConfig.preset("v2")
    assert v2.vq.space > 0 and v2.clip.space > 0 and v2.vq.levels == 2  # 16x16 tokens
    with pytest.raises(ValueError, match="unknown recipe 'v9'; expected one of v1, v2, v3"):
        PretrainConfig.preset("v9")


def test_committed_stages_carry_the_v2_recipes_so_reuse_takes_them():
    from pathlib import Path

    from styledrop.muse.pretrain import recorded_recipe
    stages, v2 = Path(__file__).parents[1] / "pretrained_stages", PretrainConfig.preset("v2")
    assert recorded_recipe(stages / "vqvae") == v2.vq.recipe()
    assert recorded_recipe(stages / "clip") == v2.clip.recipe()
    # v3's merged VQ, made once from v2's: pretrain --recipe v3 --reuse pretrained_stages copies it as it is
    assert recorded_recipe(stages / "vqvae_256") == PretrainConfig.preset("v3").vq.recipe()


def test_evaluate_tokenizer_and_clip_on_stage_folders(cli, stages, tmp_path):
    from styledrop.world import grid
    code, out, err = cli("evaluate", "tokenizer", "--base", stages, "--n", 4, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert set(report) == {"pretrain", "heldout_pair", "heldout_style", "heldout_content", "heldout_both",
                           "heldout_variant", "space"}
    assert all(0 < r["psnr"] < 60 and 0 <= r["content_acc"] <= 1 for r in report.values())
    pic = tmp_path / "mine.png"
    grid([np.zeros((64, 64, 3), np.uint8)] * 4).save(pic)  # a picture drawn outside the world, of another size
    code, out, err = cli("evaluate", "tokenizer", "--base", stages, "--n", 2, "--images", pic, "--json")
    assert code == 0 and json.loads(out)["images"]["n"] == 1, err
    code, out, err = cli("evaluate", "clip", "--base", stages, "--n", 4, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert set(report["heldout_style"]) == {"content_acc", "style_acc", "caption_rank1", "n"}
    assert "style_acc" not in report["space"]


def test_evaluate_clip_names_what_a_real_amused_folder_lacks(cli, tmp_path):
    folder = amused_like_folder(tmp_path / "amused")
    code, _, err = cli("evaluate", "clip", "--base", folder)
    assert code == 2 and "has no CLIP image tower" in err and "clip_scorer" in err
    code, out, err = cli("evaluate", "tokenizer", "--base", folder, "--n", 2, "--json")  # diffusers' VQModel
    assert code == 0 and "pretrain" in json.loads(out), err
    code, _, err = cli("evaluate", "tokenizer", "--base", tmp_path / "nowhere")
    assert code == 2 and "folder not found" in err


def test_style_space_rarely_looks_like_a_held_out_style(cli):
    code, out, err = cli("evaluate", "space", "--n", 400, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["heldout_fraction"] <= 0.05 and set(report["by_style"]) == {"pop_art", "lava", "camouflage",
                                                                             "rainbow"}


def test_grouped_clip_batches_share_a_look_within_each_group():
    from styledrop import world
    from styledrop.muse.train_clip import ClipTrainConfig, _grouped_batch
    cfg = ClipTrainConfig(batch=32, grouped=8, space=0.5)
    batch = _grouped_batch(3, cfg, world.pairs("pretrain"), world.choose_pairs("pretrain", world.SPACE))
    assert len(batch) == 32
    groups = [batch[k:k + 8] for k in range(0, 32, 8)]
    assert all(len({s.look or s.style for s in g}) == 1 for g in groups)
    assert any(len({s.content for s in g}) > 1 for g in groups)
    assert {s.style == world.SPACE for s in batch} == {True, False}  # both kinds of group in this batch
    assert [s.caption for s in batch] == [s.caption for s in _grouped_batch(3, cfg, world.pairs("pretrain"),
                                                                             world.choose_pairs("pretrain",
                                                                                                world.SPACE))]
    assert "grouped" not in ClipTrainConfig().recipe() and ClipTrainConfig(grouped=8).recipe()["grouped"] == 8


def test_clip_patch_size_is_part_of_the_recipe():
    from styledrop.muse.text import build_tokenizer
    from styledrop.muse.train_clip import train_clip
    assert "patch" not in TINY.clip.recipe()  # v1's 8-px patches: checkpoints made before the option still match
    finer = replace(TINY.clip, steps=1, patch=4)
    assert finer.recipe()["patch"] == 4
    clip = train_clip(finer, build_tokenizer())
    assert clip.config.vision_config.patch_size == 4
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 64, 64)).astype(np.float32)
    import torch
    out = clip.vision_model(pixel_values=torch.from_numpy(x))
    assert out.last_hidden_state.shape[1] == 1 + 16 * 16  # a class token and 16x16 patches


def test_conv_image_tower_trains_saves_and_scores_like_a_clip(cli, tmp_path):
    """The CNN tower (tower="conv") is in the recipe, survives the stage folder, and `evaluate clip` reads it."""
    import torch

    from styledrop.muse.text import build_tokenizer
    from styledrop.muse.toy_clip import ConvImageTower, load_clip
    from styledrop.muse.train_clip import train_clip
    assert "tower" not in TINY.clip.recipe() and "content_head" not in TINY.clip.recipe()
    cfg = replace(TINY.clip, steps=2, tower="conv", content_head=1.0)
    assert cfg.recipe()["tower"] == "conv" and cfg.recipe()["content_head"] == 1.0
    tokenizer = build_tokenizer()
    clip = train_clip(cfg, tokenizer)
    assert isinstance(clip.vision_model, ConvImageTower)
    clip.save_pretrained(tmp_path / "clip")
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    loaded = load_clip(tmp_path / "clip").eval()
    assert isinstance(loaded.vision_model, ConvImageTower)
    x = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (3, 3, 64, 64)).astype(np.float32))
    with torch.no_grad():
        before = clip.visual_projection(clip.vision_model(pixel_values=x).pooler_output)
        after = loaded.visual_projection(loaded.vision_model(pixel_values=x).pooler_output)
    assert torch.allclose(before, after, atol=1e-5)
    code, out, err = cli("evaluate", "clip", "--base", tmp_path, "--n", 4, "--json")
    assert code == 0, err
    assert set(json.loads(out)["heldout_style"]) == {"content_acc", "style_acc", "caption_rank1", "n"}
