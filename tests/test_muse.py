import json
import shutil
import warnings

import numpy as np
import pytest
import torch

from styledrop.io import UserError
from styledrop.muse import schedule
from styledrop.muse.base import MuseBase
from styledrop.muse.sampler import SampleConfig, decode_tokens, generate
from styledrop.muse.text import build_tokenizer, tokenize
from styledrop.muse.vq import TinyVQModel

from .tiny import amused_like_folder, tiny_base


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_base(tmp_path_factory.mktemp("tiny"))


@pytest.mark.parametrize("levels,grid", [(2, 16), (3, 8)])
def test_vq_round_trip_shapes(levels, grid):
    vq = TinyVQModel(channels=8, code_dim=8, codebook_size=16, levels=levels)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    idx = vq.encode_indices(x)
    assert idx.shape == (2, grid, grid) and idx.max() < 16 and vq.scale == 64 // grid
    assert vq.decode_indices(idx).shape == (2, 3, 64, 64)


def test_random_mask_follows_schedule_and_marks_positions():
    ids = torch.arange(64).repeat(500, 1) % 7
    masked, mask = schedule.random_mask(ids, 99, torch.Generator().manual_seed(0))
    assert ((masked == 99) == mask).all() and mask.sum(1).min() >= 1
    assert (masked[~mask] == ids[~mask]).all()
    # mean masked fraction of cos(pi/2 * U) is 2/pi
    assert abs(mask.float().mean().item() - 2 / torch.pi) < 0.03
    _, capped = schedule.random_mask(ids, 99, torch.Generator().manual_seed(0), max_ratio=0.5)
    fraction = capped.float().mean(1)
    assert fraction.max() <= 0.5 + 1 / 64 and fraction.min() < 0.1  # the whole range below the cap is used


def test_ring_is_the_border_so_deep_and_nothing_inside():
    from styledrop.muse.schedule import ring
    for grid, width in ((8, 1), (16, 2)):
        m = ring(grid, width).view(grid, grid)
        assert m[:width].all() and m[-width:].all() and m[:, :width].all() and m[:, -width:].all()
        assert not m[width:-width, width:-width].any() and int(m.sum()) == grid**2 - (grid - 2 * width) ** 2


def test_sampler_unmasks_monotonically_and_finishes():
    mask_id, counts = 10, []

    def fn(ids):
        counts.append(int((ids == mask_id).sum()))
        return torch.randn(ids.shape[0], ids.shape[1], 10)
    ids = decode_tokens(fn, 3, 16, mask_id, SampleConfig(steps=6))
    assert counts[0] == 3 * 16 and counts == sorted(counts, reverse=True) and len(set(counts)) == 6
    assert not (ids == mask_id).any()


def test_block_sampler_fixes_whole_squares_and_keeps_known_tokens():
    mask_id, states = 10, []

    def fn(ids):
        states.append(ids.clone())
        return torch.randn(ids.shape[0], ids.shape[1], 10)
    ids = decode_tokens(fn, 3, 64, mask_id, SampleConfig(steps=6, block=2))
    assert not (ids == mask_id).any() and len(states) == 6
    counts = [int((s == mask_id).sum()) for s in states]
    assert counts == sorted(counts, reverse=True) and len(set(counts)) == 6
    for s in states:  # every intermediate grid is masked in whole 2x2 squares
        squares = (s == mask_id).view(3, 4, 2, 4, 2)
        assert (squares.all(dim=(2, 4)) == squares.any(dim=(2, 4))).all()
    start = torch.full((2, 64), mask_id)
    start[:, ::5] = 7  # known tokens scattered inside squares: kept, and their squares still filled in
    logits = torch.cat([torch.zeros(2, 64, 7), torch.full((2, 64, 3), -30.0)], -1)
    out = decode_tokens(lambda ids: logits, 2, 64, mask_id, SampleConfig(steps=4, block=2), start=start)
    assert (out[:, ::5] == 7).all() and (out[start == mask_id] < 7).all()
    with pytest.raises(ValueError, match="does not tile"):
        decode_tokens(fn, 1, 36, mask_id, SampleConfig(steps=2, block=4))


def test_sampler_started_from_known_tokens_keeps_them():
    mask_id = 10
    start = torch.full((2, 16), mask_id)
    start[:, ::3] = 7  # anchors the model would never draw (its logits favour 0..6)
    logits = torch.cat([torch.zeros(2, 16, 7), torch.full((2, 16, 3), -30.0)], -1)
    ids = decode_tokens(lambda ids: logits, 2, 16, mask_id, SampleConfig(steps=4), start=start)
    assert (ids[:, ::3] == 7).all() and (ids[start == mask_id] < 7).all()


def test_token_temperature_sharpens_towards_the_argmax():
    torch.manual_seed(0)
    logits = torch.randn(1, 64, 10)
    best = logits.argmax(-1)
    logits.scatter_add_(-1, best[..., None], torch.ones(1, 64, 1))  # a clear winner at every position

    def fn(ids):
        return logits.expand(ids.shape[0], -1, -1)
    hot = decode_tokens(fn, 4, 64, 10, SampleConfig(steps=4, token_temperature=1.0))
    cold = decode_tokens(fn, 4, 64, 10, SampleConfig(steps=4, token_temperature=0.01))
    assert (cold == best).all() and (hot != best).any()


def test_entropy_confidence_fixes_the_most_certain_position_whatever_was_drawn():
    # position 0: two tokens, 0.85 / 0.15 (entropy 0.42); position 1: token 3 with 0.95, the rest spread
    # thin (entropy 0.39); position 2: uniform. "sampled" confidence puts position 0 first whenever
    # position 1 drew one of its rare tokens; "entropy" always keeps 1, then 0, then 2.
    k = 50
    probs = torch.full((3, k), 1e-9)
    probs[0, :2] = torch.tensor([0.85, 0.15])
    probs[1] = 0.05 / (k - 1)
    probs[1, 3] = 0.95
    probs[2] = 1 / k
    logits = probs.log()[None]
    firsts = set()
    for seed in range(60):
        gens = [torch.Generator().manual_seed(seed)]
        ids = torch.full((1, 3), k)
        out = schedule.unmask_step(ids, logits, 0, 3, k, generators=gens, temperature=0.0, confidence="entropy")
        assert (out != k).nonzero()[:, 1].tolist() == [1]
        out = schedule.unmask_step(out, logits, 1, 3, k, generators=gens, temperature=0.0, confidence="entropy")
        assert sorted((out != k).nonzero()[:, 1].tolist()) == [0, 1]
        first = schedule.unmask_step(ids, logits, 0, 3, k, generators=gens, temperature=0.0)
        firsts.add(tuple((first != k).nonzero()[:, 1].tolist()))
    assert (1,) in firsts and len(firsts) > 1  # the drawn token's probability can put another first
    with pytest.raises(ValueError, match="confidence"):
        SampleConfig(confidence="loudest")
    with pytest.raises(ValueError, match="token temperature"):
        SampleConfig(token_temperature=0)


def test_tokenizer_is_clip_format_and_checks_prompts():
    tok = build_tokenizer()
    assert tok.tokenize("a fish in neon glow style") == ["a</w>", "fish</w>", "in</w>", "neon</w>", "glow</w>",
                                                         "style</w>"]
    with pytest.raises(UserError, match="empty prompt"):
        tokenize(tok, ["  "])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ids = tokenize(tok, ["a fish " * 40])
    assert ids.shape == (1, tok.model_max_length) and "cut" in str(w[0].message)
    assert ids[0, -1] == tok.eos_token_id


def test_loading_the_tiny_base_does_not_warn_about_its_position_table(base):
    import logging

    from diffusers.utils import logging as diffusers_logging
    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    root = logging.getLogger("diffusers")  # diffusers' loggers report here and do not propagate further
    root.addHandler(handler)
    level = diffusers_logging.get_verbosity()
    try:
        MuseBase.load(base.path)
    finally:
        root.removeHandler(handler)
    assert not [m for m in seen if "pos_embed" in m]
    assert diffusers_logging.get_verbosity() == level  # the caller's level is restored


def test_tiny_pretrain_writes_amused_layout_and_samples_deterministically(base):
    for part in ("transformer", "vqvae", "text_encoder", "tokenizer", "scheduler"):
        assert (base.path / part).is_dir()
    index = json.loads((base.path / "model_index.json").read_text())
    assert index["transformer"] == ["diffusers", "UVit2DModel"]
    loaded = MuseBase.load(base.path)
    assert hasattr(loaded.transformer, "pos_embed")  # position table survives the round trip
    a = generate(loaded, ["a fish in lava style", "a cat"], SampleConfig(steps=4, seed=3))
    b = generate(loaded, ["a fish in lava style"], SampleConfig(steps=4, seed=3))
    assert a.shape == (2, 64, 64, 3) and a.dtype.name == "uint8"
    assert (a[0] == b[0]).all()  # same seed, same image, whatever the batch


def test_position_embedding_breaks_the_all_mask_symmetry(base):
    m = base.transformer
    n = base.grid
    ids = torch.full((1, n * n), base.mask_id)
    h, p = base.encode_empty(1)
    from styledrop.muse import transformer as tr
    out = tr.logits(m, ids, h, p, base.image_size)[0]  # (N, K)
    interior = out.view(n, n, -1)[2:-2, 2:-2].reshape(-1, out.shape[-1])
    assert (interior - interior[0]).abs().max() > 1e-4


def test_codebook_init_gives_g_the_codebook_geometry():
    from diffusers import UVit2DModel

    from styledrop.muse import transformer as tr
    vq = TinyVQModel(channels=8, code_dim=8, codebook_size=16, levels=3)
    g = UVit2DModel(**tr.tiny_config(codebook_size=16, text_hidden=16, text_proj=16, hidden=32, layers=1,
                                     channels=24, downsample=False, grid=8))
    mask_row = g.embed.embeddings.weight[-1].clone()
    tr.init_from_codebook(g, vq.code_vectors())

    def cosines(w):
        w = torch.nn.functional.normalize(w, dim=-1)
        return w @ w.T
    codes = cosines(vq.code_vectors())
    assert torch.allclose(cosines(g.embed.embeddings.weight[:16]), codes, atol=1e-5)
    assert torch.allclose(cosines(g.mlm_layer.conv2.weight[:, :, 0, 0]), codes, atol=1e-5)
    assert torch.equal(g.embed.embeddings.weight[-1], mask_row)  # the mask token keeps its own row
    with pytest.raises(ValueError, match="does not fit"):
        tr.init_from_codebook(g, torch.randn(32, 8))


def test_loads_and_samples_a_random_amused_layout_folder(tmp_path):
    folder = amused_like_folder(tmp_path / "amused")
    base = MuseBase.load(folder)
    assert base.image_size == 32 and base.mask_id == 39 and base.grid == 4
    images = generate(base, ["a boat"], SampleConfig(steps=3))
    assert images.shape == (1, 32, 32, 3)


def test_bad_base_folders_are_named(tmp_path, base):
    with pytest.raises(UserError, match="not found"):
        MuseBase.load(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="model_index.json"):
        MuseBase.load(tmp_path / "empty")
    broken = tmp_path / "broken"
    shutil.copytree(base.path, broken)
    shutil.rmtree(broken / "vqvae")
    with pytest.raises(UserError, match="vqvae"):
        MuseBase.load(broken)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(base.path, corrupt)
    (corrupt / "transformer" / "diffusion_pytorch_model.safetensors").write_bytes(b"garbage")
    with pytest.raises(UserError, match="diffusion_pytorch_model.safetensors is incomplete or corrupt"):
        MuseBase.load(corrupt)


def test_generate_command(cli, base, tmp_path):
    code, _, _ = cli("generate", "--prompt", "a fish in lava style", "--n", 2, "--steps", 3,
                     "--out", tmp_path / "g", "--base", base.path)
    assert code == 0
    rows = [json.loads(x) for x in (tmp_path / "g" / "metadata.jsonl").read_text().splitlines()]
    assert [r["seed"] for r in rows] == [0, 1] and (tmp_path / "g" / "grid.png").is_file()
    assert rows[0]["token_temperature"] == 0.7 and rows[0]["guidance"] == 2.0  # the defaults are recorded
    code, _, err = cli("generate", "--prompt", "a cat", "--token-temperature", 0, "--out", tmp_path / "h",
                       "--base", base.path)
    assert code == 2 and "token temperature" in err and not (tmp_path / "h").exists()
    code, _, err = cli("generate", "--prompt", " ", "--out", tmp_path / "h", "--base", base.path)
    assert code == 2 and "empty prompt" in err and not (tmp_path / "h").exists()
    listing = tmp_path / "prompts.txt"
    listing.write_text("a cat in lava style\n\na boat\n")
    code, _, err = cli("generate", "--prompts", listing, "--n", 1, "--steps", 2, "--out", tmp_path / "f",
                       "--base", base.path)
    rows = [json.loads(x) for x in (tmp_path / "f" / "metadata.jsonl").read_text().splitlines()]
    assert code == 0 and [r["prompt"] for r in rows] == ["a cat in lava style", "a boat"], err
    code, _, err = cli("generate", "--out", tmp_path / "h", "--base", base.path)
    assert code == 2 and "no prompt" in err
    code, _, err = cli("generate", "--prompt", "a cat", "--out", tmp_path / "h", "--base", tmp_path / "nope")
    assert code == 2 and "not found" in err


def test_pretrain_reuses_finished_stages(tmp_path, base):
    from styledrop.muse.pretrain import seed_work
    work = base.path.parent / "work"  # the tiny pretrain's own work folder
    fresh = tmp_path / "work"
    assert seed_work(fresh, work) == ["vqvae", "tokenizer", "clip"]
    assert seed_work(fresh, work) == []  # never overwrites
    assert (fresh / "vqvae" / "config.json").is_file()
    from_base = tmp_path / "from_base"  # a finished base folder: its clip_scorer/ is stage 2's CLIP
    assert seed_work(from_base, base.path) == ["vqvae", "tokenizer", "clip"]
    assert (from_base / "clip" / "config.json").is_file()
    # a stage folder made under another recipe is left out (and its tokenizer with it), not copied to be refused
    import shutil

    from styledrop.io import write_json
    stages = tmp_path / "stages"
    shutil.copytree(fresh, stages)
    write_json(stages / "clip" / "styledrop_stage.json", {"recipe": {"space": 0.5}})
    assert seed_work(tmp_path / "other", stages, {"clip": {"space": 0.0}}) == ["vqvae"]


def test_evaluate_base_and_bench_commands(cli, base):
    code, out, _ = cli("evaluate", "base", "--per-group", 2, "--steps", 2, "--base", base.path, "--json")
    report = json.loads(out)
    assert code == 0 and set(report) == {"pretrain", "heldout_pair", "heldout_style", "space"}
    assert all(0 <= r["content_acc"] <= 1 and "clip_t" in r and r["n"] == 2 for r in report.values())
    space = report.pop("space")
    assert all(r["fid"] > 0 and r["fid_floor"] >= 0 and r["fid_vq"] >= 0 for r in report.values())
    assert 0 <= space["ground_acc"] <= 1 and space["real_ground_acc"] >= 0.5 and space["fid"] > 0
    code, out, _ = cli("bench", "--n", 2, "--steps", 2, "--repeats", 1, "--batch", 2, "--base", base.path, "--json")
    r = json.loads(out)
    assert code == 0 and r["guided_same_tokens"] and r["cfg_images_per_s"] > 0
    assert r["train_flops_per_step"] > 0 and 0 < r["train_fraction_of_peak"] and r["peak_rss_mb"] > 10
    assert r["sampling_speedup"] > 0 and r["train_speedup"] > 0
    if "pipeline_skipped" not in r:  # the real AmusedPipeline, same G (while diffusers still has it)
        assert r["pipeline_diffusers_s"] > 0 and r["pipeline_speedup"] > 0 and r["compiled_pipeline_speedup"] > 0
    # ours again with G compiled, against the same eager reference loops
    assert r["compiled_sampling_speedup"] > 0 and r["compiled_train_speedup"] > 0
    assert 0 < r["compiled_train_fraction_of_peak"] and r["compiled_peak_rss_mb"] >= r["peak_rss_mb"]


def test_reference_sampling_loop_finishes_with_no_mask_left(base):
    from styledrop.bench import _theta, reference_sampling
    theta = _theta(base).attach(base.transformer)
    try:
        ids = reference_sampling(base, theta, ["a cat", "a boat"], steps=4, lambda_a=0.5, lambda_b=1.5)
    finally:
        theta.detach()
    assert ids.shape == (2, base.grid, base.grid) and not (ids == base.mask_id).any()


def test_categorical_sampling_follows_the_distribution():
    from styledrop.muse.schedule import sample_categorical
    probs = torch.tensor([0.1, 0.6, 0.0, 0.3])
    logp = probs.clamp_min(1e-30).log().expand(1, 20000, 4)
    draws = sample_categorical(logp, [torch.Generator().manual_seed(0)])[0]
    freq = torch.bincount(draws, minlength=4).float() / draws.numel()
    assert (freq - probs).abs().max() < 0.015 and freq[2] == 0


def test_stage_checkpoint_resumes_only_under_its_own_recipe(tmp_path):
    from styledrop.io import UserError
    from styledrop.muse import stages
    ckpt, seen = tmp_path / "g.ckpt.safetensors", []

    def run(steps, recipe):
        model = torch.nn.Linear(2, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        stages.run(model=model, opt=opt, steps=steps, step=lambda i: seen.append(i) or {"loss": 0.0}, ckpt=ckpt,
                   every=2, recipe=recipe)

    run(4, {"pose": "centered", "lr": 1e-3})
    run(6, {"pose": "centered", "lr": 1e-3})  # more steps of the same recipe: continues at step 4
    assert seen == [0, 1, 2, 3, 4, 5]
    before = ckpt.read_bytes()
    with pytest.raises(UserError, match="another recipe.*pose"):
        run(8, {"pose": "random", "lr": 1e-3})
    assert ckpt.read_bytes() == before and seen == [0, 1, 2, 3, 4, 5]


def test_resumed_stage_draws_what_an_unstopped_run_draws(tmp_path):
    from styledrop.muse import stages

    def run(steps, ckpt):
        torch.manual_seed(0)
        g, draws = torch.Generator().manual_seed(0), []
        model = torch.nn.Linear(2, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)

        def step(i):  # one draw from the run's generator, one from torch's global one (as dropout would)
            draws.append((torch.rand(1, generator=g).item(), torch.rand(1).item()))
            return {"loss": 0.0}
        stages.run(model=model, opt=opt, steps=steps, step=step, ckpt=ckpt, every=2, generators={"data": g})
        return draws

    whole = run(6, tmp_path / "whole.safetensors")
    first = run(4, tmp_path / "stopped.safetensors")
    rest = run(6, tmp_path / "stopped.safetensors")  # resumes at step 4
    assert len(rest) == 2 and first + rest == whole


def test_base_id_follows_the_weights_not_how_they_were_saved(base, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from styledrop.muse.base import base_fingerprint
    copy = tmp_path / "copy"
    shutil.copytree(base.path / "transformer", copy / "transformer")
    config = json.loads((copy / "transformer" / "config.json").read_text())
    (copy / "transformer" / "config.json").write_text(json.dumps(config | {"_diffusers_version": "9.9.9"}, indent=4))
    for f in (copy / "transformer").glob("*.safetensors"):
        save_file({k: v.float() for k, v in load_file(f).items()}, f)  # the same weights in another dtype
    assert base_fingerprint(copy) == base_fingerprint(base.path)
    for f in (copy / "transformer").glob("*.safetensors"):
        tensors = load_file(f)
        key = sorted(tensors)[0]
        save_file(tensors | {key: tensors[key] + 1}, f)
    assert base_fingerprint(copy) != base_fingerprint(base.path)


def test_a_base_over_the_shard_size_is_saved_in_shards_and_loads_the_same(base, tmp_path):
    from styledrop.muse.base import MuseBase, base_fingerprint
    base.save(tmp_path / "whole")
    base.save(tmp_path / "shards", shard_mb=0.01)  # 10 KB files: every part is split
    g = tmp_path / "shards" / "transformer"
    files = sorted(g.glob("*.safetensors"))
    assert len(files) > 1 and (g / "diffusion_pytorch_model.safetensors.index.json").is_file()
    assert all(f.stat().st_size < 200_000 for f in files)
    a, b = MuseBase.load(tmp_path / "whole"), MuseBase.load(tmp_path / "shards")
    for x, y in zip(a.transformer.state_dict().values(), b.transformer.state_dict().values()):
        assert torch.equal(x, y)
    assert base_fingerprint(tmp_path / "shards") == base_fingerprint(tmp_path / "whole")  # the same G, the same id


def test_varied_fraction_of_g_pictures_and_its_recipe():
    from styledrop import world
    from styledrop.muse.train_transformer import TransformerTrainConfig, token_dataset
    vq = TinyVQModel(channels=8, code_dim=8, codebook_size=16, levels=3)
    tokens, meta = token_dataset(vq, 20, 0, batch=8, pose="centered", varied=0.25)
    flags = [style == world.VARIED for _, style, _ in meta]
    assert tokens.shape == (20, 64) and sum(flags) == 5
    assert all(sum(flags[i:i + 4]) == 1 for i in range(0, 20, 4))  # spread through the stream
    assert all(cap == world.caption(c, None, 0) or cap == world.caption(c, None, 1)
               for c, s, cap in meta if s == world.VARIED)
    plain, _ = token_dataset(vq, 20, 0, batch=8, pose="centered")
    keep = [i for i, f in enumerate(flags) if not f]
    assert torch.equal(tokens[keep], plain[keep])  # the other pictures are those of the plain recipe
    # the recipe (what a checkpoint must match) names varied only when it is used, so older runs still resume
    assert "varied" not in TransformerTrainConfig().recipe()
    assert TransformerTrainConfig(varied=0.5).recipe()["varied"] == 0.5
    assert TransformerTrainConfig().data_recipe() == {"images": 40000, "seed": 3, "pose": "centered"}
    assert TransformerTrainConfig(varied=0.5).data_recipe()["varied"] == 0.5


def test_amused_vq_sees_pixels_in_zero_one_as_its_pipelines_give_them(tmp_path):
    """aMUSEd's VQ-GAN takes and returns pixels in [0, 1] (do_normalize=False); ours are in [-1, 1]."""
    base = MuseBase.load(amused_like_folder(tmp_path / "amused"))
    seen = []
    base.vq.vq.encoder.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    black_white = torch.full((1, 3, 32, 32), -1.0)
    black_white[..., 16:] = 1.0
    base.vq.encode_indices(black_white)
    assert seen[0].min().item() == 0.0 and seen[0].max().item() == 1.0
    idx = torch.zeros(1, 4, 4, dtype=torch.long)
    decoded = base.vq.vq.decode(idx.reshape(1, -1), force_not_quantize=True, shape=(1, 4, 4, 8)).sample
    assert torch.allclose(base.vq.decode_indices(idx), decoded.clamp(0, 1) * 2 - 1)


def test_g_may_read_a_text_tower_that_never_saw_a_picture(tmp_path):
    """text_encoder="random": T is a fresh tower of CLIP's shape (seeded), not CLIP's own; the recipe says so."""
    from dataclasses import replace

    from transformers import CLIPModel

    from styledrop.muse.pretrain import PretrainConfig, pretrain, text_encoder_of
    from styledrop.muse.train_transformer import TransformerTrainConfig

    from .tiny import TINY
    assert "text_encoder" not in TransformerTrainConfig().recipe()  # v1 checkpoints still resume
    cfg = PretrainConfig(TINY.vq, TINY.clip, replace(TINY.transformer, text_encoder="random"))
    assert cfg.transformer.recipe()["text_encoder"] == "random"
    base = pretrain(cfg, tmp_path / "base", tmp_path / "work")
    clip = CLIPModel.from_pretrained(tmp_path / "work" / "clip")
    te, again = text_encoder_of(clip, random=True), text_encoder_of(clip, random=True)
    tower = base.text_encoder.text_model.embeddings.token_embedding.weight.float()  # saved in half precision
    assert torch.allclose(tower, te.text_model.embeddings.token_embedding.weight, atol=1e-3)  # seeded: the same
    assert torch.equal(te.text_projection.weight, again.text_projection.weight)
    assert not torch.equal(tower, clip.text_model.embeddings.token_embedding.weight)
    assert torch.allclose(base.scorer.text_model.embeddings.token_embedding.weight.float(),
                          clip.text_model.embeddings.token_embedding.weight, atol=1e-3)  # the scorer stays CLIP


def test_diffusers_amused_pipeline_loads_and_runs_the_tiny_base(base):
    """A real diffusers client: AmusedPipeline reads our folder (after `import styledrop`, which model_index.json
    names for the toy VQ), given our transformer so that its position table comes along; its pixels are our VQ's."""
    diffusers = pytest.importorskip("diffusers")
    if not hasattr(diffusers, "AmusedPipeline"):
        pytest.skip("this diffusers has dropped AmusedPipeline (deprecated since 0.33.1); our core does not use it")
    AmusedPipeline = diffusers.AmusedPipeline

    import styledrop  # noqa: F401  (diffusers resolves ["styledrop", "TinyVQModel"] through it)
    from styledrop.muse.base import load_transformer
    from styledrop.oracle import to_images
    pipe = AmusedPipeline.from_pretrained(base.path, transformer=load_transformer(base.path / "transformer"),
                                          torch_dtype=torch.float32)
    assert pipe.vae_scale_factor == base.vq.scale
    kwargs = dict(num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    tokens = pipe(["a fish in watercolor style"], output_type="latent", **kwargs).images
    grid = base.image_size // base.vq.scale
    assert tokens.shape == (1, grid, grid) and 0 <= int(tokens.min()) and int(tokens.max()) < base.vq.codebook_size
    pixels = pipe(["a fish in watercolor style"], output_type="np", **kwargs).images  # (1, H, W, 3) in [0, 1]
    assert pixels.shape == (1, base.image_size, base.image_size, 3)
    ours = to_images(base.vq.decode_indices(tokens))[0].astype(np.float32) / 255
    assert np.abs(pixels[0] - ours).max() < 2 / 255  # the same tokens, the same picture


@pytest.mark.slow
def test_compiled_g_training_takes_the_same_steps_as_eager(base):
    """``compile=True`` computes logits at every position (one shape for the compiler) instead of the masked ones
    only; the loss and so the trained weights must be those of the eager run."""
    from dataclasses import replace

    from styledrop.muse.train_transformer import token_dataset, train_transformer

    from .tiny import TINY
    tokens, meta = token_dataset(base.vq, 16, 3, pose="centered")
    args = (TINY.transformer, base.vq, base.text_encoder, base.tokenizer, tokens, meta)
    eager = train_transformer(*args)
    compiled = train_transformer(*args, compile=True)
    start = train_transformer(replace(TINY.transformer, steps=0), *args[1:])
    for (name, a), b, s in zip(eager.state_dict().items(), compiled.state_dict().values(),
                               start.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-4), name
    assert any(not torch.equal(a, s) for a, s in zip(eager.state_dict().values(), start.state_dict().values()))


def test_block_masking_masks_whole_squares_of_the_token_grid():
    ids = torch.arange(2 * 64).view(2, 64) % 50
    plain = schedule.random_mask(ids, 99, torch.Generator().manual_seed(0))
    assert torch.equal(schedule.random_mask(ids, 99, torch.Generator().manual_seed(0), block=1)[1], plain[1])
    for seed in range(5):
        inp, mask = schedule.random_mask(ids, 99, torch.Generator().manual_seed(seed), block=2)
        squares = mask.view(2, 4, 2, 4, 2)
        assert (squares.all(dim=(2, 4)) == squares.any(dim=(2, 4))).all()  # each 2x2 square all or nothing
        assert mask.sum(1).min() >= 4 and torch.equal(inp[mask], torch.full_like(ids[mask], 99))
        assert torch.equal(inp[~mask], ids[~mask])
    with pytest.raises(ValueError, match="does not tile"):
        schedule.random_mask(ids, 99, block=3)
    from styledrop.muse.train_transformer import TransformerTrainConfig
    assert "mask_block" not in TransformerTrainConfig().recipe()  # older checkpoints still resume
    assert TransformerTrainConfig(mask_block=2).recipe()["mask_block"] == 2


def test_more_g_steps_continue_a_finished_g_and_fewer_or_another_recipe_are_refused(tmp_path, base):
    from dataclasses import replace

    from styledrop.io import load_tensors
    from styledrop.muse.pretrain import pretrain, seed_work

    from .tiny import TINY
    work = tmp_path / "work"
    seed_work(work, base.path.parent / "work")  # the tiny base's VQ and CLIP: only G trains here

    def run(**changes):
        ticks = []
        cfg = replace(TINY, transformer=replace(TINY.transformer, **changes))
        pretrain(cfg, tmp_path / "base", work, progress=lambda stage, i, n, _: ticks.append((stage, i, n)))
        return [(i, n) for stage, i, n in ticks if stage == "transformer"]

    assert run() == [(1, 3), (2, 3), (3, 3)]
    first = load_tensors(work / "transformer" / "diffusion_pytorch_model.safetensors")[0]
    assert run() == []  # finished at these steps: reused
    assert run(steps=5) == [(4, 5), (5, 5)]  # trained on from step 3, not anew and not skipped
    assert load_tensors(work / "transformer.ckpt.safetensors")[1]["step"] == 5
    later = load_tensors(work / "transformer" / "diffusion_pytorch_model.safetensors")[0]
    assert any(not torch.equal(first[k], later[k]) for k in first)
    before = (work / "transformer" / "diffusion_pytorch_model.safetensors").read_bytes()
    with pytest.raises(UserError, match="trained for 5 steps"):
        run(steps=4)
    with pytest.raises(UserError, match="another recipe.*hidden"):
        run(steps=6, hidden=16)
    assert (work / "transformer" / "diffusion_pytorch_model.safetensors").read_bytes() == before


def test_more_vq_or_clip_steps_train_the_finished_stage_on_and_a_missing_checkpoint_is_refused(tmp_path):
    from dataclasses import replace

    from styledrop.io import load_tensors
    from styledrop.muse.pretrain import pretrain

    from .tiny import TINY
    work = tmp_path / "work"

    def run(stage, **changes):
        ticks = []
        cfg = replace(TINY, **{stage: replace(getattr(TINY, stage), **changes)})
        pretrain(cfg, tmp_path / "base", work, progress=lambda s, i, n, _: ticks.append((s, i, n)), only=stage)
        return [(i, n) for s, i, n in ticks if s == stage]

    for stage, folder in (("vq", "vqvae"), ("clip", "clip")):
        steps = getattr(TINY, stage).steps
        assert run(stage) == [(i, steps) for i in range(1, steps + 1)]
        assert run(stage) == []  # finished at these steps: reused
        assert run(stage, steps=steps + 1) == [(steps + 1, steps + 1)]  # trained on, not anew and not skipped
        assert load_tensors(work / f"{stage}.ckpt.safetensors")[1]["step"] == steps + 1
        weights = next((work / folder).glob("*.safetensors"))
        before = weights.read_bytes()
        with pytest.raises(UserError, match=f"trained for {steps + 1} steps, more than"):
            run(stage, steps=steps)
        (work / f"{stage}.ckpt.safetensors").unlink()
        with pytest.raises(UserError, match="checkpoint .* is missing"):
            run(stage, steps=steps + 2)
        assert weights.read_bytes() == before


def test_vq_finetune_leg_trains_on_from_the_first_leg_and_resumes(tmp_path):
    from styledrop.muse.train_vq import VQTrainConfig, train_vq
    plain = VQTrainConfig(steps=2, batch=2, channels=8, codebook_size=32)
    legs = VQTrainConfig(steps=2, batch=2, channels=8, codebook_size=32, finetune_steps=2, finetune_lr=1e-2)
    assert "finetune_steps" not in plain.recipe() and legs.recipe()["finetune_lr"] == 1e-2
    first = train_vq(plain, tmp_path / "a" / "vq.ckpt.safetensors")
    seen = []
    both = train_vq(legs, tmp_path / "b" / "vq.ckpt.safetensors", lambda i, n, losses: seen.append((i, n)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]  # one count over both legs, for one progress bar
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["vq.ckpt.safetensors",
                                                                  "vq.finetune-after2.ckpt.safetensors"]
    w = "codebook.weight"
    assert not torch.equal(first.state_dict()[w], both.state_dict()[w])  # the second leg moved the weights
    again = train_vq(legs, tmp_path / "b" / "vq.ckpt.safetensors")  # both legs done: read back, not retrained
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in both.state_dict().items())


def test_pretrain_refuses_a_g_width_its_heads_cannot_split(cli, tmp_path):
    code, _, err = cli("pretrain", "--g-hidden", 130, "--work", tmp_path / "w", "--out", tmp_path / "b")
    assert code == 2 and "--g-hidden must be a multiple of G's 4 attention heads; got 130" in err
    assert not (tmp_path / "w").exists() and not (tmp_path / "b").exists()
