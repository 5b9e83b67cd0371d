import json

import numpy as np
import pytest
import torch
from diffusers import UVit2DModel
from PIL import Image

from styledrop import adapters
from styledrop.io import UserError
from styledrop.muse import transformer as tr
from styledrop.muse.sampler import guided_logits_fn

from .browser import chromium, needs_chromium
from .tiny import randomised, tiny_base


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_base(tmp_path_factory.mktemp("tiny"))


def _logits(base, ids, prompt="a fish"):
    h, p = base.encode_text([prompt] * ids.shape[0])
    return tr.logits(base.transformer, ids, h, p, base.image_size)


@pytest.mark.parametrize("kind,placement", [("bottleneck", "layers"), ("shared", "layers"), ("lora", "layers"),
                                            ("bottleneck", "layers+up")])
def test_new_adapter_leaves_g_unchanged(base, kind, placement):
    ids = torch.randint(0, base.mask_id + 1, (2, base.grid**2))
    before = _logits(base, ids)
    a = adapters.build(adapters.AdapterConfig(kind, 4, placement), base.transformer).attach(base.transformer)
    try:
        assert torch.allclose(_logits(base, ids), before, atol=1e-6)
        randomised(a)
        assert not torch.allclose(_logits(base, ids), before, atol=1e-3)
    finally:
        a.detach()
    assert torch.allclose(_logits(base, ids), before, atol=1e-6)  # detach restores G


def test_two_adapters_per_layer_each_with_its_own_weights(base):
    a = adapters.build(adapters.AdapterConfig("bottleneck", 4), base.transformer)
    layers = len(base.transformer.transformer_layers)
    assert len(a.blocks) == 2 * layers
    assert len({id(b.down.weight) for b in a.blocks}) == 2 * layers
    # each site really uses its own block: perturbing the last one alone changes the output
    ids = torch.randint(0, base.mask_id, (1, base.grid**2))
    a.attach(base.transformer)
    try:
        before = _logits(base, ids)
        with torch.no_grad():
            a.blocks[-1].up.weight.normal_(0, 1.0)
        assert not torch.allclose(_logits(base, ids), before, atol=1e-4)
    finally:
        a.detach()


def test_up_block_placement_adds_its_own_sites_that_each_reach_the_output(base):
    paper = adapters.build(adapters.AdapterConfig("bottleneck", 4), base.transformer)
    a = adapters.build(adapters.AdapterConfig("bottleneck", 4, "layers+up"), base.transformer)
    up = base.transformer.up_block
    assert len(a.blocks) == len(paper.blocks) + 2 * len(up.res_blocks)
    conv_width = base.transformer.config.block_out_channels
    assert [b.down.in_features for b in a.blocks[len(paper.blocks):]] == [conv_width] * 2 * len(up.res_blocks)
    ids = torch.randint(0, base.mask_id, (1, base.grid**2))
    with adapters.attached(a, base.transformer):
        for site in range(len(paper.blocks), len(a.blocks)):  # the res block (channels first) and cross-attention
            before = _logits(base, ids)
            with torch.no_grad():
                a.blocks[site].up.weight.normal_(0, 1.0)
            assert not torch.allclose(_logits(base, ids), before, atol=1e-4), site


def test_up_block_placement_is_for_bottleneck_adapters_only():
    with pytest.raises(ValueError, match="bottleneck adapters only"):
        adapters.AdapterConfig("lora", 4, "layers+up")
    with pytest.raises(ValueError, match="unknown placement"):
        adapters.AdapterConfig("bottleneck", 4, "everywhere")


@pytest.mark.parametrize("kind,rank,placement", [("bottleneck", 8, "layers"), ("shared", 8, "layers"),
                                                 ("lora", 4, "layers"), ("bottleneck", 8, "layers+up")])
def test_adapter_is_under_one_percent_of_a_base_sized_g(kind, rank, placement):
    g = UVit2DModel(**tr.tiny_config(codebook_size=512, text_hidden=128, text_proj=128))
    a = adapters.build(adapters.AdapterConfig(kind, rank, placement), g)
    assert adapters.param_count(a) / sum(p.numel() for p in g.parameters()) < 0.01


@pytest.mark.parametrize("kind,placement", [("bottleneck", "layers"), ("lora", "layers"), ("bottleneck", "layers+up")])
def test_batched_guidance_equals_separate_forwards(base, kind, placement):
    a = randomised(adapters.build(adapters.AdapterConfig(kind, 4, placement), base.transformer))
    a.attach(base.transformer)
    try:
        ids = torch.randint(0, base.mask_id + 1, (3, base.grid**2))
        kw = dict(lambda_b=5.0, adapter=a, lambda_a=1.5, negative="a cat")
        one = guided_logits_fn(base, ["a fish"] * 3, **kw)(ids)
        three = guided_logits_fn(base, ["a fish"] * 3, separate=True, **kw)(ids)
        assert torch.allclose(one, three, atol=1e-4)
        # and the formula itself: Ĝθ(t) + λA(Ĝθ(t) − G(t)) + λB(G(t) − G(n))
        a.gate = None
        at = _logits(base, ids)
        a.gate = torch.zeros(3)
        gt, gn = _logits(base, ids), _logits(base, ids, "a cat")
        a.gate = None
        assert torch.allclose(one, at + 1.5 * (at - gt) + 5.0 * (gt - gn), atol=1e-4)
    finally:
        a.detach()


def test_training_lowers_the_loss_and_round_trips(cli, base, tmp_path):
    from styledrop import world
    from styledrop.train import TrainConfig, train_adapter
    ref = world.sample(0, 0, [("fish", "pop_art")]).image
    for kind, placement in (("bottleneck", "layers+up"), ("lora", "layers")):
        losses = []
        a = train_adapter(base, [ref], "a fish in pop art style", adapters.AdapterConfig(kind, 8, placement),
                          TrainConfig(steps=60, batch=4, lr=5e-3),
                          progress=lambda i, n, lo: losses.append(lo["loss"]))
        assert np.mean(losses[-10:]) < np.mean(losses[:10]), kind
    adapters.save(tmp_path / "a.safetensors", a, base, {"role": "style", "style": "in pop art style"})
    b, meta = adapters.load(tmp_path / "a.safetensors", base)
    assert meta["style"] == "in pop art style" and meta["adapter"]["kind"] == "lora"
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    up = train_adapter(base, [ref], "a fish in pop art style", adapters.AdapterConfig("bottleneck", 4, "layers+up"),
                       TrainConfig(steps=2, batch=2))
    adapters.save(tmp_path / "up.safetensors", up, base, {})
    back, meta = adapters.load(tmp_path / "up.safetensors", base)
    assert back.cfg.placement == "layers+up" and len(back.blocks) == len(up.blocks)


def test_adapter_for_another_base_is_refused(base, tmp_path):
    a = adapters.build(adapters.AdapterConfig("bottleneck", 4), base.transformer)
    adapters.save(tmp_path / "a.safetensors", a, base, {})
    other = tiny_base(tmp_path / "other")  # same sizes, different weights
    with torch.no_grad():
        other.transformer.mlm_layer.conv1.weight.add_(1.0)
    other.save(tmp_path / "other_saved")
    from styledrop.muse.base import MuseBase
    other = MuseBase.load(tmp_path / "other_saved")
    with pytest.raises(UserError, match="trained for base"):
        adapters.load(tmp_path / "a.safetensors", other)


def test_train_and_sample_commands(cli, base, tmp_path):
    ref = tmp_path / "ref.png"
    grey = Image.fromarray(np.random.default_rng(0).integers(0, 255, (100, 80), dtype=np.uint8), "L")
    grey.save(ref)  # grey and 80 wide, 100 high: converted, centre-cropped (not squashed) and resized, with notes
    out = tmp_path / "style.safetensors"
    code, _, err = cli("train", "--image", ref, "--style", "in lava style", "--content", "a fish",
                       "--out", out, "--steps", 2, "--batch", 2, "--base", base.path)
    assert code == 0 and "converted L to RGB" in err and "centre-cropped 80x100 to 80x80" in err and out.is_file()
    assert "resized 80x80 to 64x64" in err
    code, _, _ = cli("sample", "--adapter", out, "--prompt", "a boat", "--n", 2, "--steps", 2,
                     "--out", tmp_path / "s", "--base", base.path)
    rows = [json.loads(x) for x in (tmp_path / "s" / "metadata.jsonl").read_text().splitlines()]
    assert code == 0 and rows[0]["prompt"] == "a boat in lava style" and len(rows) == 2


def test_train_command_places_up_block_adapters_and_refuses_a_checkpoint_of_another_shape(cli, base, tmp_path):
    from styledrop import world
    from styledrop.train import TrainConfig, train_adapter
    ref = tmp_path / "ref.png"
    Image.fromarray(world.sample(0, 0, [("fish", "pop_art")]).image).save(ref)
    out = tmp_path / "up.safetensors"
    code, _, err = cli("train", "--image", ref, "--style", "in pop art style", "--placement", "layers+up",
                       "--out", out, "--steps", 2, "--batch", 2, "--base", base.path)
    assert code == 0, err
    theta, meta = adapters.load(out, base)
    assert meta["adapter"]["placement"] == "layers+up" and theta.cfg.placement == "layers+up"
    code, _, err = cli("train", "--image", ref, "--style", "s", "--placement", "middle", "--out", out,
                       "--base", base.path)
    assert code == 2 and "unknown placement 'middle'" in err
    # a half-done paper-placement run left a checkpoint; resuming it as layers+up would not fit, so it is refused
    ckpt = tmp_path / "again.safetensors.ckpt"
    train_adapter(base, [world.sample(0, 0, [("fish", "pop_art")]).image], "a fish", adapters.AdapterConfig(),
                  TrainConfig(steps=2, batch=2), ckpt)
    code, _, err = cli("train", "--image", ref, "--style", "s", "--placement", "layers+up",
                       "--out", tmp_path / "again.safetensors", "--steps", 4, "--batch", 2, "--base", base.path)
    assert code == 2 and "another recipe" in err and not (tmp_path / "again.safetensors").exists()


def test_train_bad_input_leaves_output_untouched(cli, base, tmp_path):
    out = tmp_path / "style.safetensors"
    out.write_bytes(b"previous adapter")
    bad = tmp_path / "bad.png"
    bad.write_text("not a png")
    code, _, err = cli("train", "--image", bad, "--style", "in x style", "--out", out, "--base", base.path)
    assert code == 2 and "cannot read image" in err and out.read_bytes() == b"previous adapter"
    code, _, err = cli("train", "--image", tmp_path / "none.png", "--style", "s", "--out", out, "--base", base.path)
    assert code == 2 and "not found" in err
    code, _, err = cli("sample", "--adapter", out, "--prompt", "a boat", "--out", tmp_path / "s", "--base", base.path)
    assert code == 2 and "not a valid safetensors" in err and not (tmp_path / "s").exists()


def test_demo_runs_the_whole_job_on_a_given_base(cli, base, tmp_path):
    code, _, err = cli("demo", "--base", base.path, "--steps", 2, "--out", tmp_path / "demo")
    assert code == 0, err
    assert "oracle on the 16 pictures, StyleDrop" in err and "base alone" in err
    assert len(list((tmp_path / "demo" / "samples").glob("0*.png"))) == 16
    assert (tmp_path / "demo" / "style.safetensors").is_file()
    page = tmp_path / "demo" / "index.html"
    assert err.strip().splitlines()[-1] == f"open {page}"  # the page's path is printed last
    text = page.read_text()
    assert text.count("<img ") == 1 + 2 * 16 and "image-rendering: pixelated" in text and "src=\"http" not in text
    assert "styledrop sample --adapter" in text  # the commands to go further
    assert "regime" in text and "heldout_styles.py --regime hard" in text  # which regime it shows, and the other


def test_demo_captions_a_variant_with_its_parents_descriptor():
    from styledrop.cli.world_cmds import demo_caption
    phrase, regime = demo_caption("amber_neon")
    assert phrase == "in neon glow style" and regime.startswith("The paper's regime") and "amber neon" in regime
    phrase, regime = demo_caption("pop_art")
    assert phrase == "in pop art style" and regime.startswith("The hard regime")
    phrase, regime = demo_caption("watercolor")
    assert phrase == "in watercolor style" and "is a pretraining style" in regime


@needs_chromium
def test_demo_page_shows_every_picture_in_a_browser(cli, base, tmp_path):
    code, _, err = cli("demo", "--base", base.path, "--steps", 2, "--out", tmp_path / "demo")
    assert code == 0, err
    driver = chromium()
    try:
        driver.get((tmp_path / "demo" / "index.html").as_uri())
        shown = driver.execute_script(
            "return [...document.images].map(i => [i.complete && i.naturalWidth, i.clientWidth])")
        assert len(shown) == 33 and all(w == 64 and cw == 256 for w, cw in shown)  # loaded, shown at 4x
        text = driver.find_element("tag name", "body").text
        assert "base alone" in text and "StyleDrop" in text and "Oracle scores" in text
    finally:
        driver.quit()


def test_token_adapter_learns_only_its_words_through_t(cli, base, tmp_path):
    """Textual inversion: G and T untouched, the style words' embeddings learned; only prompts with them change."""
    from styledrop import world
    ref = tmp_path / "ref.png"
    Image.fromarray(world.sample(0, 0, [("fish", "pop_art")]).image).save(ref)
    g_before = {k: v.clone() for k, v in base.transformer.state_dict().items()}
    t_before = base.text_encoder.get_input_embeddings().weight.clone()
    out = tmp_path / "tok.safetensors"
    code, _, err = cli("train", "--image", ref, "--token", "[v]", "--adapter", "token", "--out", out, "--steps", 20,
                       "--batch", 2, "--lr", 0.05, "--base", base.path)
    assert code == 0, err
    a, meta = adapters.load(out, base)
    assert meta["adapter"]["kind"] == "token" and meta["words"] == "in [v] style"
    assert adapters.param_count(a) == len(a.ids) * t_before.shape[1]
    assert not torch.allclose(a.vectors, t_before[a.ids])  # learned away from the words' own meaning
    assert all(torch.equal(v, base.transformer.state_dict()[k]) for k, v in g_before.items())
    assert torch.equal(base.text_encoder.get_input_embeddings().weight, t_before)

    ids = torch.randint(0, base.mask_id + 1, (2, base.grid**2))
    for prompt, changed in (("a boat in [v] style", True), ("a boat", False)):
        kw = dict(lambda_b=1.0, adapter=a, lambda_a=1.0)
        with_a = guided_logits_fn(base, [prompt] * 2, **kw)(ids)
        plain = guided_logits_fn(base, [prompt] * 2, lambda_b=1.0)(ids)  # λA·(Ĝθ − G) vanishes if Tθ = T
        assert changed != torch.allclose(with_a, plain, atol=1e-5), prompt
    code, _, err = cli("sample", "--adapter", out, "--prompt", "a boat", "--n", 1, "--steps", 2,
                       "--out", tmp_path / "s", "--base", base.path)
    assert code == 0, err
    sub = tmp_path / "sub.safetensors"
    assert cli("train", "--subject", ref, "--token", "[w]", "--class", "fish", "--out", sub, "--steps", 2,
               "--batch", 2, "--base", base.path)[0] == 0
    code, _, err = cli("sample", "--style", out, "--subject", sub, "--prompt", "a [w] fish", "--n", 1,
                       "--steps", 2, "--out", tmp_path / "both", "--base", base.path)
    assert code == 2 and "token adapter" in err and not (tmp_path / "both").exists()


def test_prior_preservation_keeps_what_the_base_draws_for_the_prior_prompts(base):
    from styledrop import world
    from styledrop.muse.train_transformer import masked_token_loss
    from styledrop.train import TrainConfig, prior_samples, train_adapter
    ref = world.sample(0, 0, [("fish", "pop_art")]).image
    prompts = ["a cat", "a star", "a house", "a moon"]
    ids, h, p = prior_samples(base, prompts, seed=0)
    assert ids.shape == (4, base.grid**2) and not (ids == base.mask_id).any()
    from styledrop.muse import sampler
    per_prompt = sampler.logits_bytes_per_prompt(base)
    with pytest.MonkeyPatch.context() as mp:  # logits bounded as in `sample`: 3 prompts a call, the same tokens
        mp.setattr(sampler, "LOGITS_BYTES", 3 * per_prompt)
        assert torch.equal(prior_samples(base, prompts, seed=0)[0], ids)

    def loss_on_prior(prior):
        a = train_adapter(base, [ref], "a fish in pop art style", adapters.AdapterConfig("bottleneck", 8),
                          TrainConfig(steps=60, batch=4, lr=5e-3, prior=prior), prior_prompts=prompts)
        a.attach(base.transformer)
        try:
            with torch.no_grad():  # the same masks for both adapters
                return masked_token_loss(base.net, ids.repeat(8, 1), h.repeat(8, 1, 1), p.repeat(8, 1),
                                         base.mask_id, base.image_size, torch.Generator().manual_seed(1)).item()
        finally:
            a.detach()

    kept, plain = loss_on_prior(2.0), loss_on_prior(0.0)
    # 2.31 vs 2.42 nats when written; 1.28 vs 1.30-1.33 on the test base built since the tokenizer's corpus grew
    assert kept < plain - 0.01
    with pytest.raises(ValueError, match="prior"):
        TrainConfig(prior=-1)
    with pytest.raises(ValueError, match="needs prior_prompts"):
        train_adapter(base, [ref], "a fish", adapters.AdapterConfig("bottleneck", 8), TrainConfig(steps=1, prior=1.0))


def test_the_tiny_base_keeps_its_tuned_defaults(base):
    from styledrop import defaults
    chosen, sources = defaults.settle(base, {k: None for k in defaults.KEYS})
    assert chosen == defaults.TINY and set(sources.values()) == {defaults.TINY_SOURCE}
    assert chosen["lambda_a"] == 0.5 and chosen["lambda_b"] == 1.0 and chosen["sample_steps"] == 12
