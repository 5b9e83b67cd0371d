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


def _as_hub_download(src, dst, fp32=True, fp16=True):
    """``src``'s parts laid out as a hub download: fp32 files, ``.fp16`` files, or both."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file
    shutil.copytree(src, dst)
    for part, stem in (("transformer", "diffusion_pytorch_model"), ("vqvae", "diffusion_pytorch_model"),
                       ("text_encoder", "model")):
        full = dst / part / f"{stem}.safetensors"
        tensors = load_file(full)
        if fp16:
            save_file({k: v.to(torch.float16) for k, v in tensors.items()}, dst / part / f"{stem}.fp16.safetensors",
                      metadata={"format": "pt"})
        if not fp32:
            full.unlink()
    return dst


def test_the_base_id_depends_only_on_the_weights_g_loads_from(folder, tmp_path):
    ids = {}
    for name, kw in (("full", {}), ("fp32", {"fp16": False}), ("fp16only", {"fp32": False})):
        path = _as_hub_download(folder, tmp_path / name, **kw)
        base = MuseBase.load(path)  # an fp16-only folder loads too (variant="fp16")
        ids[name] = base.model_id()
        assert base.image_size == MuseBase.load(folder).image_size
    assert len(set(ids.values())) == 1, ids  # a full download, a single-variant copy and an fp16-only one agree


def test_broken_folders_get_one_line_before_any_work(cli, folder, tmp_path):
    import shutil

    from styledrop.io import UserError
    truncated = _as_hub_download(folder, tmp_path / "truncated", fp16=False)
    weights = truncated / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # an interrupted download
    with pytest.raises(UserError, match="incomplete or corrupt.*interrupted"):
        MuseBase.load(truncated)
    code, _, err = cli("generate", "--base", truncated, "--prompt", "a boat", "--n", 1, "--out", tmp_path / "out")
    assert code == 2 and "diffusion_pytorch_model.safetensors is incomplete" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()

    no_tokenizer = tmp_path / "no-tokenizer"
    shutil.copytree(folder, no_tokenizer)
    for f in (no_tokenizer / "tokenizer").iterdir():
        if f.name != "tokenizer_config.json":
            f.unlink()
    with pytest.raises(UserError, match="tokenizer has only|tokenizer"):
        MuseBase.load(no_tokenizer)

    huge = tmp_path / "huge-max-length"
    shutil.copytree(folder, huge)
    config = huge / "tokenizer" / "tokenizer_config.json"
    config.write_text(json.dumps(json.loads(config.read_text()) | {"model_max_length": 10**30}))
    with pytest.raises(UserError, match="model_max_length"):
        MuseBase.load(huge)


def test_the_real_vq_encodes_and_decodes_in_bounded_chunks(folder, monkeypatch):
    import torch

    from styledrop.muse import vq as vq_module
    base = MuseBase.load(folder)
    x = torch.rand(5, 3, base.image_size, base.image_size) * 2 - 1
    whole_idx, whole = base.vq.encode_indices(x), None
    whole = base.vq.decode_indices(whole_idx)
    calls = {"encode": 0, "decode": 0}
    for name in calls:
        real = getattr(base.vq.vq, name)

        def counted(*a, _real=real, _name=name, **k):
            calls[_name] += 1
            return _real(*a, **k)

        monkeypatch.setattr(base.vq.vq, name, counted)
    monkeypatch.setattr(vq_module, "PIXELS_PER_CALL", 2 * base.image_size ** 2)  # 2 pictures a call
    idx = base.vq.encode_indices(x)
    assert torch.equal(idx, whole_idx) and calls["encode"] == 3  # 2 + 2 + 1, the same tokens as one call
    assert (base.vq.decode_indices(idx) - whole).abs().max() < 1e-3 and calls["decode"] == 3  # conv rounding


def test_each_base_brings_its_defaults_and_a_flag_always_wins(cli, folder, tmp_path):
    import shutil
    ref = tmp_path / "ref.png"
    Image.fromarray(world.sample(0, 0, [("house", "lava")]).image).save(ref)
    style = tmp_path / "style.safetensors"
    code, _, err = cli("train", "--image", ref, "--style", "in lava style", "--out", style, "--steps", 2,
                       "--base", folder)
    assert code == 0, err
    # aMUSEd without a styledrop.json: diffusers' StyleDrop recipe for the adapter, the paper's sampling, each named
    assert "adapter lora, rank 16, lr 0.0004, batch 1 (aMUSEd-256 default: diffusers amused StyleDrop example)" in err
    assert "training steps 2 (given)" in err  # the settings grouped by where each came from
    meta = adapters.load(style, MuseBase.load(folder))[1]
    assert meta["train"]["kind"] == "lora" and meta["train"]["rank"] == 16 and meta["train"]["lr"] == 4e-4
    out = tmp_path / "s"
    code, _, err = cli("sample", "--adapter", style, "--prompt", "a boat", "--n", 1, "--out", out, "--base", folder,
                       "--lambda-b", 3)
    assert code == 0, err
    assert "sampling steps 36, λA 2.0 (aMUSEd-256 default: StyleDrop paper)" in err and "λB 3.0 (given)" in err
    row = json.loads((out / "metadata.jsonl").read_text().splitlines()[0])
    assert row["lambda_a"] == 2.0 and row["lambda_b"] == 3 and row["steps"] == 36
    assert row["sources"]["lambda_b"] == "given" and "StyleDrop paper" in row["sources"]["lambda_a"]

    # a base folder's own styledrop.json wins over the built-in defaults, and a flag over both
    own = tmp_path / "own-defaults"
    shutil.copytree(folder, own)
    (own / "styledrop.json").write_text(json.dumps({"settings": {"sample_steps": 4, "lambda_a": 1.0},
                                                    "source": "tuned by hand"}))
    code, _, err = cli("sample", "--adapter", style, "--prompt", "a boat", "--n", 1, "--out", tmp_path / "o",
                       "--base", own, "--steps", 3)
    assert code == 0, err
    assert "λA 1.0 (styledrop.json in the base folder (tuned by hand))" in err and "sampling steps 3 (given)" in err
    (own / "styledrop.json").write_text(json.dumps({"settings": {"lambda_c": 1.0}}))
    code, _, err = cli("sample", "--adapter", style, "--prompt", "a boat", "--out", tmp_path / "bad", "--base", own)
    assert code == 2 and "unknown settings lambda_c" in err and not (tmp_path / "bad").exists()


def test_sampling_takes_fewer_prompts_at_once_where_the_logits_would_be_large(folder, monkeypatch):
    from styledrop.muse import sampler
    base = MuseBase.load(folder)
    per_prompt = sampler.logits_bytes_per_prompt(base)
    assert sampler.max_prompts(base, 16) == 16  # a small grid: the usual 16
    monkeypatch.setattr(sampler, "LOGITS_BYTES", 3 * per_prompt)
    assert sampler.max_prompts(base, 16) == 3
    whole = sampler.generate(base, ["a boat"] * 5, sampler.SampleConfig(steps=2))  # in chunks of 3 and 2
    monkeypatch.setattr(sampler, "LOGITS_BYTES", 2**40)
    assert (sampler.generate(base, ["a boat"] * 5, sampler.SampleConfig(steps=2)) == whole).all()
