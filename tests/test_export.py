"""`styledrop export --format peft`: PeftModel loads the folder and gives our logits."""

import pytest
import torch
from peft import PeftModel

from styledrop import adapters
from styledrop.muse import transformer as tr
from styledrop.muse.base import load_transformer

from .tiny import tiny_base


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_base(tmp_path_factory.mktemp("tiny"))


def _saved_adapter(base, kind, path):
    torch.manual_seed(0)
    theta = adapters.build(adapters.AdapterConfig(kind, 4), base.transformer)
    for p in theta.parameters():
        p.data.normal_(0, 0.3)
    adapters.save(path, theta, base, {"role": "style", "style": "in lava style"})
    return theta


def test_lora_export_loads_in_peft_with_the_same_logits(cli, base, tmp_path):
    theta = _saved_adapter(base, "lora", tmp_path / "lora.safetensors")
    code, _, err = cli("export", "--adapter", tmp_path / "lora.safetensors", "--out", tmp_path / "peft",
                       "--base", base.path)
    assert code == 0, err
    loaded = PeftModel.from_pretrained(load_transformer(base.path / "transformer"), tmp_path / "peft").eval()
    ids = torch.full((2, base.grid ** 2), base.mask_id)
    ids[:, ::2] = 3
    h, p = base.encode_text(["a cat in lava style", "a boat"])
    with torch.no_grad():
        theirs = tr.logits(loaded, ids, h, p, base.image_size)
        plain = tr.logits(base.transformer, ids, h, p, base.image_size)
        with adapters.attached(theta, base.transformer):
            ours = tr.logits(base.transformer, ids, h, p, base.image_size)
    assert (ours - plain).abs().max() > 1e-2  # the adapter does something
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-5)
    # a second export into the same, now non-empty, folder is refused
    assert cli("export", "--adapter", tmp_path / "lora.safetensors", "--out", tmp_path / "peft",
               "--base", base.path)[0] == 2


def test_bottleneck_export_is_refused_with_the_reason(cli, base, tmp_path):
    _saved_adapter(base, "bottleneck", tmp_path / "b.safetensors")
    code, _, err = cli("export", "--adapter", tmp_path / "b.safetensors", "--out", tmp_path / "x", "--base", base.path)
    assert code == 2 and "GELU" in err and "--adapter lora" in err and not (tmp_path / "x").exists()
