"""Restyling an existing picture: MaskGIT editing with a style adapter."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from styledrop import adapters, world
from styledrop.muse.pretrain import pretrain
from styledrop.muse.sampler import SampleConfig, decode_tokens, guided_logits_fn
from styledrop.oracle import to_tensor
from styledrop.restyle import RestyleConfig, first_step, restyle

from .tiny import TINY, amused_like_folder, randomised, tiny_base


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_base(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def theta(base):
    return randomised(adapters.build(adapters.AdapterConfig("bottleneck", 4), base.transformer), std=0.3)


def _pictures(n=2, size=64):
    return [world.render("cat", "watercolor", np.random.default_rng(i))[:size, :size] for i in range(n)]


def _tokens(base, images):
    return base.vq.encode_indices(to_tensor(images)).flatten(1)


def test_tiny_strength_keeps_every_token_and_full_strength_equals_sampling(base, theta):
    pics, cfg = _pictures(), SampleConfig(steps=6, seed=3)
    out, redrawn = restyle(base, pics, ["a picture in pop art style"] * 2, cfg, RestyleConfig(strength=1e-3),
                           theta, 0.5, 1.0)
    assert not redrawn.any()
    assert torch.equal(_tokens(base, list(out)), _tokens(base, base_roundtrip(base, pics)))
    # strength 1: every token re-drawn from the first step: exactly `sample` with the same seed
    prompts = ["a picture in pop art style"] * 2
    out, redrawn = restyle(base, pics, prompts, cfg, RestyleConfig(strength=1.0), theta, 0.5, 1.0)
    assert redrawn.all()
    with adapters.attached(theta, base.transformer):
        fn = guided_logits_fn(base, prompts, lambda_b=1.0, adapter=theta, lambda_a=0.5)
        ids = decode_tokens(fn, 2, base.grid**2, base.mask_id, cfg)
    from styledrop.muse.sampler import tokens_to_images
    assert np.array_equal(out, tokens_to_images(base, ids))


def base_roundtrip(base, pics):
    from styledrop.muse.sampler import tokens_to_images
    return list(tokens_to_images(base, _tokens(base, pics)))


def test_one_token_at_the_lowest_strength_is_still_redrawn(base, theta):
    out, redrawn = restyle(base, _pictures(1), ["a cat"], SampleConfig(steps=12), RestyleConfig(strength=0.01),
                           theta, 0.5, 1.0)
    assert redrawn.sum() == 1 and out.shape == (1, base.image_size, base.image_size, 3)


@pytest.mark.parametrize("select", ["random", "unlikely"])
def test_kept_tokens_are_never_redrawn_and_the_seed_fixes_the_bytes(base, theta, select):
    pics, cfg = _pictures(3), SampleConfig(steps=6, seed=0)
    rc = RestyleConfig(strength=0.5, select=select)
    a, redrawn = restyle(base, pics, ["a cat in pop art style"] * 3, cfg, rc, theta, 0.5, 1.0)
    b, _ = restyle(base, pics, ["a cat in pop art style"] * 3, cfg, rc, theta, 0.5, 1.0)
    assert a.tobytes() == b.tobytes()
    n = base.grid**2
    assert (redrawn.sum(1) == round(0.5 * n)).all()
    before, after = _tokens(base, pics), _tokens(base, list(a))
    assert torch.equal(after[~redrawn], before[~redrawn])  # decoding then re-encoding keeps the kept tokens
    c, _ = restyle(base, pics, ["a cat in pop art style"] * 3, SampleConfig(steps=6, seed=1), rc, theta, 0.5, 1.0)
    assert c.tobytes() != a.tobytes()


@pytest.mark.parametrize("select", ["random", "unlikely"])
def test_restyle_takes_few_pictures_at_once_where_the_logits_would_be_large_with_the_same_bytes(
        base, theta, select, monkeypatch):
    from styledrop.muse import sampler
    pics, cfg, rc = _pictures(5), SampleConfig(steps=4, seed=2), RestyleConfig(strength=0.6, select=select)
    prompts = ["a cat in pop art style"] * 5
    whole, redrawn = restyle(base, pics, prompts, cfg, rc, theta, 0.5, 1.0)
    per_prompt = sampler.logits_bytes_per_prompt(base)
    monkeypatch.setattr(sampler, "LOGITS_BYTES", 2 * per_prompt)  # 2 pictures a call: chunks of 2, 2 and 1
    calls = []
    real = sampler.decode_tokens
    monkeypatch.setattr("styledrop.restyle.decode_tokens",
                        lambda fn, b, *a, **k: calls.append(b) or real(fn, b, *a, **k))
    chunked, redrawn2 = restyle(base, pics, prompts, cfg, rc, theta, 0.5, 1.0)
    assert calls == [2, 2, 1]
    assert chunked.tobytes() == whole.tobytes() and torch.equal(redrawn, redrawn2)


def test_schedule_starts_where_it_masks_the_strength():
    assert first_step(1.0, 12) == 0
    assert first_step(0.5, 12) == 8  # cos(pi/2 * 8/12) = 0.5
    assert first_step(0.01, 12) == 11  # the last step always runs: it fills whatever is still masked
    with pytest.raises(ValueError, match=r"strength must be in \(0, 1\]"):
        RestyleConfig(strength=0)
    with pytest.raises(ValueError, match="unknown selection"):
        RestyleConfig(select="best")


def test_restyle_command_writes_sample_like_outputs_and_refuses_bad_input(cli, base, theta, tmp_path):
    from PIL import Image
    adapter = tmp_path / "style.safetensors"
    adapters.save(adapter, theta, base, {"role": "style", "style": "in pop art style", "caption": "a cat"})
    pic = tmp_path / "mine.png"
    Image.fromarray(np.full((200, 150, 4), 90, np.uint8), "RGBA").save(pic)  # not the world's size or mode
    out = tmp_path / "out"
    code, _, err = cli("restyle", "--adapter", adapter, "--image", pic, "--n", 2, "--steps", 4, "--out", out,
                       "--base", base.path)
    assert code == 0, err
    assert "note:" in err and "centre-cropped 150x200 to 150x150" in err and "converted RGBA" in err
    code, _, err = cli("restyle", "--adapter", adapter, "--image", pic, "--n", 1, "--steps", 2, "--out",
                       tmp_path / "padded", "--base", base.path, "--fit", "pad")
    assert code == 0 and "padded 150x200 to 200x200" in err, err
    code, _, err = cli("restyle", "--adapter", adapter, "--image", pic, "--out", tmp_path / "x", "--base", base.path,
                       "--fit", "squash")
    assert code == 2 and "--fit must be crop or pad" in err and not (tmp_path / "x").exists()
    rows = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
    assert [r["seed"] for r in rows] == [0, 1] and rows[0]["input"] == "mine.png" and rows[0]["strength"] == 0.6
    assert rows[0]["prompt"] == "a picture in pop art style"  # the adapter's content-free caption
    grid = Image.open(out / "grid.png")
    assert grid.size[0] > 3 * base.image_size  # the input beside its two outputs
    for args, words in [((), "give a style adapter"), (("--adapter", adapter, "--strength", 0), "strength must be"),
                        (("--adapter", adapter, "--strength", 1.5), "strength must be"),
                        (("--adapter", adapter, "--content", " "), "empty --content")]:
        bad = tmp_path / "bad"
        code, _, err = cli("restyle", "--image", pic, "--out", bad, "--base", base.path, *args)
        assert code == 2 and words in err and not bad.exists(), (args, err)
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    code, _, err = cli("restyle", "--adapter", adapter, "--image", notes, "--out", tmp_path / "bad",
                       "--base", base.path)
    assert code == 2 and "cannot read image" in err
    other = pretrain(replace(TINY, transformer=replace(TINY.transformer, seed=9)), tmp_path / "other",
                     tmp_path / "other_work")  # another G, so another base id
    code, _, err = cli("restyle", "--adapter", adapter, "--image", pic, "--out", tmp_path / "bad", "--base",
                       other.path)
    assert code == 2 and "trained for base" in err and not (tmp_path / "bad").exists()


def test_restyle_on_a_real_amused_layout_folder(cli, tmp_path):
    folder = amused_like_folder(tmp_path / "amused")
    pic = tmp_path / "pic.png"
    from PIL import Image
    Image.fromarray(np.full((32, 32, 3), 120, np.uint8)).save(pic)
    code, _, err = cli("restyle", "--prompt", "a cat in watercolor style", "--image", pic, "--n", 1, "--steps", 3,
                       "--out", tmp_path / "out", "--base", folder)
    assert code == 0, err
