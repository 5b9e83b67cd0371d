"""--scorer: a real transformers CLIPModel folder (tiny and random here, at 224 px) scores pictures on any base."""

import io
import json
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTextConfig, CLIPTextModel

from styledrop import world
from styledrop.io import UserError
from styledrop.muse.text import build_tokenizer, tokenize
from styledrop.scorer import Scorer

from .tiny import amused_like_folder

COLOURS = {"red": (220, 30, 30), "blue": (30, 40, 220), "green": (30, 200, 40), "yellow": (230, 220, 30)}


def clip_folder(path, trained: bool = False):
    """A tiny CLIPModel at 224 px with its tokenizer and CLIPImageProcessor config, as a real CLIP folder has.
    ``trained``: a few contrastive steps on plain colour pictures captioned "a {colour} picture"."""
    torch.manual_seed(0)
    tok = build_tokenizer(max_length=77)
    common = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    config = CLIPConfig(text_config=dict(common, vocab_size=len(tok), max_position_embeddings=77,
                                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                         pad_token_id=tok.pad_token_id),
                        vision_config=dict(common, image_size=224, patch_size=32), projection_dim=16)
    model = CLIPModel(config)
    processor = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    if trained:
        rng = np.random.default_rng(0)
        names = list(COLOURS)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        ids = tokenize(tok, [f"a {c} picture" for c in names])
        for _ in range(40):
            pics = [np.clip(np.array(COLOURS[c]) + rng.integers(-20, 20, (48, 64, 3)), 0, 255).astype(np.uint8)
                    for c in names]
            pixels = processor(images=pics, return_tensors="pt")["pixel_values"]
            logits = model(input_ids=ids, pixel_values=pixels).logits_per_image
            truth = torch.arange(len(names))
            loss = F.cross_entropy(logits, truth) + F.cross_entropy(logits.T, truth)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def scorer_dir(tmp_path_factory):
    return clip_folder(tmp_path_factory.mktemp("clip") / "clip-tiny", trained=True)


@pytest.fixture(scope="module")
def amused(tmp_path_factory):
    return amused_like_folder(tmp_path_factory.mktemp("amused") / "amused-256-tiny")


def test_preprocessing_is_clip_processors(scorer_dir):
    scorer = Scorer.load(scorer_dir)
    pics = [world.sample(i, 3, world.pairs("pretrain")).image for i in range(3)]
    pics.append(np.zeros((40, 90, 3), np.uint8))  # not square: resized on the short side, centre-cropped
    expected = CLIPProcessor.from_pretrained(scorer_dir)(images=pics, return_tensors="pt")["pixel_values"]
    got = scorer.pixels(pics)
    assert got.shape == (4, 3, 224, 224)
    torch.testing.assert_close(got, expected)


def test_clip_t_prefers_the_prompts_own_colour(scorer_dir):
    scorer = Scorer.load(scorer_dir)
    pics = {c: np.full((64, 64, 3), rgb, np.uint8) for c, rgb in COLOURS.items()}
    for colour in COLOURS:
        own = scorer.clip_t([pics[colour]], [f"a {colour} picture"])[0]
        others = scorer.clip_t([pics[c] for c in COLOURS if c != colour], [f"a {colour} picture"] * 3)
        assert bool((own > others).all()), (colour, own, others)
    ci = scorer.clip_i([pics["red"], pics["blue"]], pics["red"])
    assert ci[0] > ci[1] and abs(float(ci[0]) - 1) < 1e-4


def test_bad_scorer_folders_get_one_clear_error(tmp_path, scorer_dir):
    with pytest.raises(UserError, match="no config.json"):
        Scorer.load(tmp_path / "missing")
    text_only = tmp_path / "text-only"
    CLIPTextModel(CLIPTextConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2)).save_pretrained(text_only)
    with pytest.raises(UserError, match="only CLIP's text tower"):
        Scorer.load(text_only)
    other = tmp_path / "not-clip"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(UserError, match="not a CLIP model"):
        Scorer.load(other)
    no_processor = tmp_path / "no-processor"
    clip_folder(no_processor)
    (no_processor / "preprocessor_config.json").unlink()
    with pytest.raises(UserError, match="preprocessor_config.json"):
        Scorer.load(no_processor)
    # transformers 5 writes its image settings as processor_config.json: that folder loads
    saved_by_v5 = tmp_path / "saved-by-v5"
    clip_folder(saved_by_v5)
    settings = json.loads((saved_by_v5 / "preprocessor_config.json").read_text())
    (saved_by_v5 / "preprocessor_config.json").unlink()
    (saved_by_v5 / "processor_config.json").write_text(json.dumps({"image_processor": settings} | settings))
    assert Scorer.load(saved_by_v5).model is not None
    truncated = tmp_path / "truncated"
    clip_folder(truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(UserError, match="incomplete or corrupt"):
        Scorer.load(truncated)
    no_tokenizer = tmp_path / "no-tokenizer"
    clip_folder(no_tokenizer)
    for name in ("vocab.json", "merges.txt", "tokenizer.json"):
        (no_tokenizer / name).unlink(missing_ok=True)
    with pytest.raises(UserError, match="tokenizer"):
        Scorer.load(no_tokenizer)


def _style_adapter(cli, amused, tmp_path):
    ref = tmp_path / "ref.png"
    Image.fromarray(world.sample(0, 0, [("house", "lava")]).image).save(ref)
    style = tmp_path / "style.safetensors"
    code, _, err = cli("train", "--image", ref, "--style", "in lava style", "--out", style, "--steps", 2,
                       "--batch", 2, "--base", amused)
    assert code == 0, err
    return ref, style


def test_the_real_path_with_a_real_clip(cli, amused, scorer_dir, tmp_path):
    ref, style = _style_adapter(cli, amused, tmp_path)
    r2 = tmp_path / "r2.safetensors"
    code, _, err = cli("feedback", "--adapter", style, "--out", r2, "--base", amused, "--n-prompts", 2,
                       "--per-prompt", 2, "--steps", 2)
    assert code == 2 and "--scorer PATH" in err and "--select random" in err and not r2.exists()
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red bicycle\na lighthouse\n")
    code, _, err = cli("feedback", "--adapter", style, "--out", r2, "--base", amused, "--scorer", scorer_dir,
                       "--prompts", prompts, "--n-prompts", 2, "--per-prompt", 3, "--steps", 2)
    assert code == 0, err
    assert err.count("oracle metrics") == 1
    rows = [json.loads(line) for line in (tmp_path / "r2.safetensors.rounds" / "round2" / "scores.jsonl")
            .read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["a red bicycle"] * 3 + ["a lighthouse"] * 3
    assert all("clip_t" in r and "oracle" not in r for r in rows)
    for group in (rows[:3], rows[3:]):  # CLIP selection: the best-scored picture of each prompt
        assert [r["kept"] for r in group].count(True) == 1
        assert max(group, key=lambda r: r["clip_t"])["kept"]

    code, out, err = cli("evaluate", "style", "--adapter", style, "--base", amused, "--scorer", scorer_dir,
                         "--prompts", prompts, "--seeds", 2, "--steps", 2, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert set(report["adapter"]) == {"clip_t", "clip_i"} and report["reference"] is None and report["n"] == 4

    subject = tmp_path / "subject.safetensors"
    assert cli("train", "--subject", ref, "--token", "[v]", "--class", "house", "--out", subject, "--steps", 2,
               "--batch", 2, "--base", amused)[0] == 0
    code, out, err = cli("evaluate", "compose", "--style", style, "--subject", subject, "--base", amused,
                         "--scorer", scorer_dir, "--seeds", 2, "--steps", 2, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["target_style"] is None and all(set(report[m]) == {"clip_t"} for m in ("two-theta", "merge"))

    page = tmp_path / "report.html"
    code, out, err = cli("report", "--image", ref, "--descriptor", "in lava style", "--reference-content", "a house",
                         "--base", amused, "--scorer", scorer_dir, "--prompts", prompts, "--n-prompts", 2,
                         "--per-prompt", 2, "--seeds", 2,
                         "--steps", 2, "--ids", "0,3", "--out", page, "--json")
    assert code == 0, err
    table = json.loads(out)["table"]
    assert list(table) == ["base", "round 1", "round 2 CLIP", "round 2 random", "round 2 manual"]
    assert all(set(row) == {"clip_t", "clip_i"} for row in table.values())
    html = page.read_text()
    assert str(scorer_dir) in html and "no oracle metrics" in html
    assert "2 content prompts" in html  # the file's two, not the 30 everyday subjects


def test_scorer_errors_on_the_command_line(cli, amused, tmp_path):
    _, style = _style_adapter(cli, amused, tmp_path)
    code, _, err = cli("evaluate", "style", "--adapter", style, "--base", amused, "--scorer", tmp_path / "nope")
    assert code == 2 and "nope" in err and "CLIPModel" in err
    code, _, err = cli("feedback", "--adapter", style, "--out", tmp_path / "r2.safetensors", "--base", amused,
                       "--prompts", "30")
    assert code == 2 and "--n-prompts" in err
    code, _, err = cli("evaluate", "base", "--base", amused)
    assert code == 2 and "evaluate style --scorer" in err
    code, _, err = cli("report", "--style", "lava", "--base", amused, "--out", tmp_path / "r.html")
    assert code == 2 and "--image" in err and not (tmp_path / "r.html").exists()
    code, _, err = cli("report", "--style", "lava", "--base", amused, "--out", tmp_path / "r.html", "--prompts", "12")
    assert code == 2 and "--n-prompts" in err and not (tmp_path / "r.html").exists()


def test_the_studio_ticks_the_best_of_each_batch_by_clip(amused, scorer_dir, tmp_path):
    from fastapi.testclient import TestClient

    from styledrop.muse.base import MuseBase
    from styledrop.ui.app import create_app
    from styledrop.ui.studio import Studio
    origin = "http://127.0.0.1:7860"
    for scorer in (None, Scorer.load(scorer_dir)):
        studio = Studio(MuseBase.load(amused), tmp_path / f"ui{scorer is None}", scorer=scorer)
        client = TestClient(create_app(studio), base_url=origin, headers={"Origin": origin})
        assert client.get("/api/status").json()["scorer"] == (scorer.name if scorer else None)
        pic = np.full((32, 32, 3), COLOURS["red"], np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pic).save(buf, "PNG")
        assert client.post("/api/uploads/references", files=[("files", ("red.png", buf.getvalue(), "image/png"))]
                           ).status_code == 200
        studio.start_training("in red style", steps=2).wait(120)  # raises the training's error, if any
        first = client.post("/api/generate", json={"prompt": "a red picture", "n": 3}).json()["images"]
        second = client.post("/api/generate", json={"prompt": "a blue picture", "n": 2, "seed": 5}).json()["images"]
        # round 2 reads the ticked pictures back at the base's own size (32 px here), not the world's 64
        assert client.post("/api/round2", json={"ids": [first[0]["id"], second[1]["id"]], "steps": 2}
                           ).status_code == 202
        while client.get("/api/status").json()["job"]["state"] not in ("done", "failed"):
            time.sleep(0.05)
        assert client.get("/api/status").json()["job"]["state"] == "done", client.get("/api/status").json()["job"]
        assert client.get("/api/status").json()["rounds"] == [1, 2]
        r = client.post("/api/picks/clip")
        if scorer is None:
            assert r.status_code == 400 and "--scorer" in r.json()["error"] and "clip_t" not in first[0]
            continue
        best = [max(batch, key=lambda im: im["clip_t"])["id"] for batch in (first, second)]
        assert r.json()["picks"] == sorted(best)
        assert client.get("/api/state").json()["picks"] == sorted(best)


@pytest.mark.slow
def test_the_readmes_real_path_recipe_runs_as_written(cli, amused, scorer_dir, tmp_path, monkeypatch):
    """The README's real-path commands, on the tiny random folders instead of amused-256 and ViT-L/14."""
    import re
    import shlex
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    train = next(line for b in blocks for line in b.splitlines() if line.startswith("styledrop train --base amused"))
    recipe = next(b for b in blocks if "--scorer" in b).splitlines()
    monkeypatch.chdir(tmp_path)
    Image.fromarray(world.sample(0, 0, [("house", "lava")]).image).save("ref.png")
    for line in [train] + [x for x in recipe if not x.startswith("styledrop ui")]:
        argv = shlex.split(re.sub(r"\s+#.*$", "", line))[1:]
        argv = [str(amused) if w == "amused-256" else str(scorer_dir) if w == "clip-vit-large-patch14" else
                "cpu" if w == "cuda" else w for w in argv]
        code, _, err = cli(*argv)
        assert code == 0, (line, err)
    assert "round 2 CLIP" in Path("w.html").read_text()
