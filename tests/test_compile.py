"""``MuseBase.compile()``: G through torch.compile gives eager mode's numbers, adapters attached after
compiling included (dynamo ignores hooks added after compiling unless they are guarded)."""

import shutil

import pytest
import torch

from styledrop import adapters
from styledrop.muse import transformer as tr
from styledrop.muse.base import MuseBase
from styledrop.train import TrainConfig, train_adapter
from styledrop.world import sample

from .tiny import randomised, tiny_base

needs_compiler = pytest.mark.skipif(not shutil.which("g++"), reason="torch.compile on the CPU needs a C++ compiler")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_base(tmp_path_factory.mktemp("tiny")).path


@torch.no_grad()
def _both(eager, compiled, ids, prompt="a fish"):
    h, p = eager.encode_text([prompt] * ids.shape[0])
    return (tr.logits(eager.net, ids, h, p, eager.image_size),
            tr.logits(compiled.net, ids, h, p, compiled.image_size))


@needs_compiler
@pytest.mark.parametrize("kind", ["bottleneck", "lora"])
def test_compiled_g_sees_adapters_attached_after_compiling(folder, kind):
    eager, compiled = MuseBase.load(folder), MuseBase.load(folder).compile()
    assert compiled.net is not compiled.transformer and eager.net is eager.transformer
    ids = torch.randint(0, eager.mask_id + 1, (4, eager.grid**2))
    a, b = _both(eager, compiled, ids)  # compiled first without any adapter
    assert torch.allclose(a, b, atol=1e-4)
    theta = randomised(adapters.build(adapters.AdapterConfig(kind, 4), eager.transformer), std=0.05)
    theta_c = adapters.build(adapters.AdapterConfig(kind, 4), compiled.transformer)
    theta_c.load_state_dict(theta.state_dict())
    with adapters.attached(theta, eager.transformer), adapters.attached(theta_c, compiled.transformer):
        a2, b2 = _both(eager, compiled, ids)
        assert not torch.allclose(a2, a, atol=1e-3)  # the adapter does change G...
        assert torch.allclose(a2, b2, atol=1e-4)  # ...and the compiled G runs it
        theta.gate = theta_c.gate = torch.tensor([1.0, 0.0, 1.0, 0.0])
        a3, b3 = _both(eager, compiled, ids)
        assert torch.allclose(a3, b3, atol=1e-4)
        assert torch.allclose(b3[1], b[1], atol=1e-4) and torch.allclose(b3[0], b2[0], atol=1e-4)
        theta.gate = theta_c.gate = None
    _, b4 = _both(eager, compiled, ids)  # detached: back to plain G
    assert torch.allclose(b4, b, atol=1e-5)


@needs_compiler
def test_adapter_trained_on_compiled_g_matches_eager(folder):
    images = [sample(0, 0, [("house", "lava")]).image]
    cfg, acfg = TrainConfig(steps=6, batch=4), adapters.AdapterConfig("bottleneck", 4)
    runs = [train_adapter(base, images, "a house in lava style", acfg, cfg).state_dict()
            for base in (MuseBase.load(folder), MuseBase.load(folder).compile())]
    assert any(v.abs().max() > 0 for k, v in runs[1].items() if "up.weight" in k)  # it did learn
    for k in runs[0]:
        assert torch.allclose(runs[0][k], runs[1][k], atol=1e-4), k


def test_compile_without_a_cpp_compiler_is_a_clear_error(cli, folder, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    code, _, err = cli("generate", "--prompt", "a fish", "--n", 1, "--out", tmp_path / "out", "--base", folder,
                       "--compile")
    assert code == 2 and "C++ compiler" in err and not (tmp_path / "out").exists()
