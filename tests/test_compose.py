"""Two θ's at sampling time: the mixing formula, its batching, stack and merge, and the commands."""

import json

import pytest
import torch
from PIL import Image

from styledrop import adapters, world
from styledrop.compose import compose_logits_fn, composed, merge, subject_prompt
from styledrop.io import UserError
from styledrop.muse.sampler import guided_logits_fn

from .tiny import tiny_base


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_base(tmp_path_factory.mktemp("tiny"))


def _random_adapter(base, kind, seed):
    torch.manual_seed(seed)
    theta = adapters.build(adapters.AdapterConfig(kind, 4), base.transformer)
    for p in theta.parameters():
        p.data.normal_(0, 0.2)
    return theta.eval()


def test_subject_prompt_drops_the_descriptor():
    assert subject_prompt("a [v] fish in lava style", "in lava style") == "a [v] fish"
    assert subject_prompt("a [v] fish on a boat", "in lava style") == "a [v] fish on a boat"


@pytest.mark.parametrize("kind", ["bottleneck", "lora"])
def test_two_theta_mixes_the_two_guided_logits(base, kind):
    style, subject = _random_adapter(base, kind, 0), _random_adapter(base, kind, 1)
    prompts, desc = ["a [v] fish", "a [v] cat"], "in lava style"
    ids = torch.full((2, base.grid ** 2), base.mask_id)
    ids[:, ::3] = 5
    kw = dict(lambda_a=0.7, lambda_b=1.5)
    plain = guided_logits_fn(base, prompts, lambda_b=0.0)(ids)
    with composed(base, style, subject, "two-theta"):
        mixed = {g: compose_logits_fn(base, prompts, desc, style, subject, mode="two-theta", gamma=g, **kw)(ids)
                 for g in (0.0, 0.3, 1.0)}
    with adapters.attached(style, base.transformer):
        l_s = guided_logits_fn(base, [p + " " + desc for p in prompts], adapter=style, **kw)(ids)
    with adapters.attached(subject, base.transformer):
        l_c = guided_logits_fn(base, prompts, adapter=subject, **kw)(ids)
    assert not torch.allclose(l_s, l_c, atol=1e-3)  # the two adapters really differ
    torch.testing.assert_close(mixed[0.0], l_s, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(mixed[1.0], l_c, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(mixed[0.3], 0.7 * l_s + 0.3 * l_c, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(guided_logits_fn(base, prompts, lambda_b=0.0)(ids), plain)  # G alone again


def test_stack_and_merge(base):
    style, subject = _random_adapter(base, "bottleneck", 0), _random_adapter(base, "bottleneck", 1)
    merged = merge(style, subject, base.transformer)
    for k, v in merged.state_dict().items():
        torch.testing.assert_close(v, style.state_dict()[k] + subject.state_dict()[k])
    with pytest.raises(UserError, match="same kind, rank and placement"):
        merge(style, _random_adapter(base, "lora", 2), base.transformer)
    up = adapters.build(adapters.AdapterConfig("bottleneck", style.cfg.rank, "layers+up"), base.transformer)
    with pytest.raises(UserError, match="bottleneck/.*/layers and bottleneck/.*/layers\\+up"):
        merge(style, up, base.transformer)
    ids = torch.full((1, base.grid ** 2), base.mask_id)
    kw = dict(gamma=0.5, lambda_a=0.5, lambda_b=1.0)
    with composed(base, style, subject, "stack"):
        stack = compose_logits_fn(base, ["a [v] fish"], "in lava style", style, subject, mode="stack", **kw)(ids)
    with composed(base, style, subject, "merge") as m:
        merged_logits = compose_logits_fn(base, ["a [v] fish"], "in lava style", style, subject, mode="merge",
                                          merged=m, **kw)(ids)
    assert not torch.allclose(stack, merged_logits, atol=1e-4)  # GELU: summed weights != stacked adapters
    with pytest.raises(UserError, match="gamma"):
        compose_logits_fn(base, ["a"], "", style, subject, mode="two-theta", gamma=1.5, lambda_a=0, lambda_b=0)


def test_subject_training_sampling_and_evaluation_commands(cli, base, tmp_path):
    subj = []
    for i, st in enumerate(["sepia_photo", "watercolor", "chalkboard"]):
        path = tmp_path / f"rocket{i}.png"
        Image.fromarray(world.sample(i, 0, [("rocket", st)]).image).save(path)
        subj.append(path)
    ref = tmp_path / "lava.png"
    Image.fromarray(world.sample(0, 0, [("house", "lava")]).image).save(ref)
    s_ad, c_ad = tmp_path / "style.safetensors", tmp_path / "subject.safetensors"
    assert cli("train", "--image", ref, "--style", "in molten lava style", "--out", s_ad, "--steps", 2,
               "--base", base.path)[0] == 0
    code, _, err = cli("train", "--subject", *subj, "--token", "[v]", "--class", "rocket", "--prior", 2,
                       "--out", c_ad, "--steps", 2, "--base", base.path)
    assert code == 0, err
    meta = adapters.load(c_ad, base)[1]
    assert meta["role"] == "subject" and meta["caption"] == "a [v] rocket" and len(meta["train"]["images"]) == 3
    assert cli("train", "--subject", subj[0], "--out", tmp_path / "x.safetensors", "--base", base.path)[0] == 2

    for mode in ("two-theta", "stack", "merge"):
        out = tmp_path / mode
        code, _, err = cli("sample", "--style", s_ad, "--subject", c_ad, "--prompt", "a [v] rocket", "--n", 2,
                           "--compose", mode, "--gamma", 0.6, "--out", out, "--base", base.path)
        assert code == 0, err
        rows = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
        assert len(rows) == 2 and rows[0]["compose"] == mode
        assert rows[0]["prompt"] == "a [v] rocket in molten lava style"
    code, _, err = cli("sample", "--style", s_ad, "--subject", c_ad, "--prompt", "a [v] rocket", "--gamma", 1.5,
                       "--out", tmp_path / "bad", "--base", base.path)
    assert code == 2 and "gamma" in err and not (tmp_path / "bad").exists()
    code, _, err = cli("sample", "--style", c_ad, "--subject", s_ad, "--prompt", "a [v] rocket", "--n", 1,
                       "--out", tmp_path / "swapped", "--base", base.path)
    assert code == 0 and "trained as a subject adapter" in err

    code, out, err = cli("evaluate", "compose", "--style", s_ad, "--subject", c_ad, "--seeds", 2, "--json",
                         "--base", base.path)
    assert code == 0, err
    report = json.loads(out)
    assert report["subject_class"] == "rocket" and report["n"] == 2
    for mode in ("two-theta", "stack", "merge"):
        assert set(report[mode]) >= {"style_acc", "subject_acc", "mean", "clip_t"}
