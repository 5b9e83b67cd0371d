"""A random folder with exactly amused-256's parts and config keys (tiny sizes): the whole StyleDrop path on it."""

import json

import pytest
from PIL import Image

from styledrop import adapters, world
from styledrop.muse.base import MuseBase

from .tiny import amused_like_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return amused_like_folder(tmp_path_factory.mktemp("amused") / "amused-256-tiny")


@pytest.mark.parametrize("kind", ["bottleneck", "lora"])
def test_train_sample_feedback_compose_on_an_amused_folder(cli, folder, tmp_path, kind):
    ref = tmp_path / "ref.png"
    Image.fromarray(world.sample(0, 0, [("house", "lava")]).image).save(ref)  # 64 px: resized to 32 with a note
    style = tmp_path / "style.safetensors"
    code, _, err = cli("train", "--image", ref, "--style", "in lava style", "--adapter", kind, "--out", style,
                       "--steps", 2, "--batch", 2, "--base", folder)
    assert code == 0, err
    assert "resized 64x64 to 32x32" in err
    base = MuseBase.load(folder)
    theta, meta = adapters.load(style, base)
    assert adapters.param_count(theta) < 0.2 * sum(p.numel() for p in base.transformer.parameters())

    code, _, err = cli("sample", "--adapter", style, "--prompt", "a boat", "--n", 2, "--steps", 3,
                       "--out", tmp_path / "samples", "--base", folder)
    assert code == 0, err
    assert Image.open(tmp_path / "samples" / "0000.png").size == (32, 32)

    r2 = tmp_path / "r2.safetensors"
    code, _, err = cli("feedback", "--adapter", style, "--out", r2, "--select", "random", "--n-prompts", 2,
                       "--per-prompt", 2, "--steps", 2, "--base", folder)
    assert code == 0, err
    assert adapters.load(r2, base)[1]["round"] == 2

    subject = tmp_path / "subject.safetensors"
    assert cli("train", "--subject", ref, "--token", "[v]", "--class", "house", "--adapter", kind, "--out", subject,
               "--steps", 2, "--batch", 2, "--base", folder)[0] == 0
    code, _, err = cli("sample", "--style", style, "--subject", subject, "--prompt", "a [v] house", "--n", 1,
                       "--steps", 3, "--out", tmp_path / "both", "--base", folder)
    assert code == 0, err
    assert json.loads((tmp_path / "both" / "metadata.jsonl").read_text().splitlines()[0])["compose"] == "two-theta"
