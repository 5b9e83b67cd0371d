"""--device / --dtype: detection, clear refusals, and a half-precision base that still trains and samples."""

import pytest
import torch

from styledrop import adapters
from styledrop.device import resolve
from styledrop.io import UserError
from styledrop.muse.base import MuseBase
from styledrop.muse.sampler import SampleConfig, generate
from styledrop.train import TrainConfig, train_adapter

from .tiny import tiny_base


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_base(tmp_path_factory.mktemp("tiny"))


def test_resolve_detects_and_refuses():
    assert resolve("cpu") == (torch.device("cpu"), torch.float32)
    assert resolve("cpu", "bfloat16")[1] == torch.bfloat16
    if not torch.cuda.is_available():
        assert resolve() == (torch.device("cpu"), torch.float32)
        with pytest.raises(UserError, match="no CUDA device"):
            resolve("cuda")
    with pytest.raises(UserError, match="unknown --device"):
        resolve("tpu")
    with pytest.raises(UserError, match="unknown --dtype"):
        resolve("cpu", "float64")


def test_half_precision_base_trains_fp32_adapters_and_samples(base):
    half = MuseBase.load(base.path, dtype=torch.bfloat16)
    for part in (half.transformer, half.text_encoder, half.vq):
        assert {p.dtype for p in part.parameters()} == {torch.bfloat16}  # no fp32 copy of the frozen base
    losses = []
    theta = train_adapter(half, [torch.randint(0, 255, (64, 64, 3), dtype=torch.uint8).numpy()], "a cat in lava style",
                          adapters.AdapterConfig("bottleneck", 4), TrainConfig(steps=3, batch=2),
                          progress=lambda i, n, logs: losses.append(logs["loss"]))
    assert {p.dtype for p in theta.parameters()} == {torch.float32}
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    with adapters.attached(theta, half.transformer):
        images = generate(half, ["a cat"], SampleConfig(steps=3))
    assert images.shape == (1, 64, 64, 3)


def test_float16_training_scales_its_loss_and_bf16_is_chosen_only_where_native(base, monkeypatch):
    made = []
    real = torch.amp.GradScaler

    def spy(*args, **kw):
        made.append(kw.get("enabled"))
        return real(*args, **kw)

    monkeypatch.setattr(torch.amp, "GradScaler", spy)
    half = MuseBase.load(base.path, dtype=torch.float16)
    losses = []
    theta = train_adapter(half, [torch.randint(0, 255, (64, 64, 3), dtype=torch.uint8).numpy()], "a cat in lava style",
                          adapters.AdapterConfig("bottleneck", 4), TrainConfig(steps=3, batch=2),
                          progress=lambda i, n, logs: losses.append(logs["loss"]))
    assert made == [True] and all(torch.isfinite(torch.tensor(losses)))
    assert any(p.abs().sum() > 0 for n, p in theta.named_parameters() if "up" in n)  # it learnt (W_up starts at 0)
    train_adapter(base, [torch.randint(0, 255, (64, 64, 3), dtype=torch.uint8).numpy()], "a cat",
                  adapters.AdapterConfig("bottleneck", 4), TrainConfig(steps=1, batch=2))
    assert made == [True, False]  # fp32 needs no scaling

    # a V100 / T4 (compute capability 7.x) only emulates bf16: the default is fp16 there, bf16 from Ampere (8.0) on
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for capability, dtype in (((7, 0), torch.float16), ((7, 5), torch.float16), ((8, 0), torch.bfloat16),
                              ((9, 0), torch.bfloat16)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what it says on a V100 too
        assert resolve("cuda")[1] == dtype, capability


def test_cli_refuses_a_missing_gpu_and_bad_dtype(cli, base, tmp_path):
    if not torch.cuda.is_available():
        code, _, err = cli("generate", "--prompt", "a cat", "--out", tmp_path / "g", "--device", "cuda",
                           "--base", base.path)
        assert code == 2 and "no CUDA device" in err and not (tmp_path / "g").exists()
        code, _, err = cli("pretrain", "--device", "cuda", "--work", tmp_path / "w", "--out", tmp_path / "b")
        assert code == 2 and "no CUDA device" in err and not (tmp_path / "w").exists()
    code, _, err = cli("generate", "--prompt", "a cat", "--out", tmp_path / "g", "--dtype", "float64",
                       "--base", base.path)
    assert code == 2 and "float64" in err
    code, _, err = cli("generate", "--prompt", "a cat", "--n", 1, "--steps", 2, "--out", tmp_path / "g",
                       "--dtype", "bfloat16", "--base", base.path)
    assert code == 0, err
