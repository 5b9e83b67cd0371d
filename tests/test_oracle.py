import json

import numpy as np
import torch

from styledrop import oracle, world


def test_tiny_training_round_trips_through_safetensors(tmp_path):
    cfg = oracle.OracleConfig(steps=3, batch=8, width=4)
    trained = oracle.train(cfg)
    path = tmp_path / "o.safetensors"
    trained.save(path, {"width": 4})
    loaded = oracle.Oracles.load(path)
    x = oracle.to_tensor([world.render("cat", "lava", np.random.default_rng(0))])
    with torch.no_grad():
        assert torch.allclose(trained.content(x), loaded.content(x))
        assert torch.allclose(trained.style(x), loaded.style(x))


def test_an_oracle_trained_with_the_style_space_has_its_class_and_keeps_it_through_a_save(tmp_path):
    cfg = oracle.OracleConfig(steps=2, batch=8, width=4, space=0.5)
    trained = oracle.train(cfg)
    assert trained.style_names == list(world.STYLE_NAMES) + ["space"]
    assert trained.style.head.out_features == len(world.STYLE_NAMES) + 1
    path = tmp_path / "o.safetensors"
    trained.save(path, {"width": 4, "styles": trained.style_names})
    loaded = oracle.Oracles.load(path)
    assert loaded.style_names == trained.style_names
    images = [world.open_look_sample(k, 0, world.choose_pairs(None, world.SPACE)) for k in range(6)]
    assert [p["style"] for p in loaded.classify([s.image for s in images])] == [
        p["style"] for p in trained.classify([s.image for s in images])]
    check = oracle.space_check(loaded, 8)
    assert check["n"] == 8 and 0 <= check["space_acc"] <= 1 and 0 <= check["called_held_out"] <= 1
    assert oracle.Oracles.load().style_names == list(world.STYLE_NAMES)  # the shipped one has no such class


def test_shipped_oracles_reach_95_percent(cli):
    code, out, _ = cli("oracle", "check", "--json", "--n", 400)
    acc = json.loads(out)
    assert code == 0
    assert acc["content_acc"] >= 0.95 and acc["style_acc"] >= 0.95, acc
    # each held-out variant is told from its parent on fresh renders, both ways
    assert set(acc["variants"]) == set(world.HELDOUT_VARIANTS)
    assert all(min(row.values()) >= 0.95 for row in acc["variants"].values()), acc["variants"]


def test_shipped_space_aware_judge_names_styles_and_calls_open_looks_space(cli, tmp_path):
    code, out, _ = cli("oracle", "check", "--oracle", "space", "--json", "--n", 400)
    acc = json.loads(out)
    assert code == 0 and acc["content_acc"] >= 0.95 and acc["style_acc"] >= 0.95, acc
    assert acc["space"]["space_acc"] >= 0.95 and acc["space"]["called_held_out"] <= 0.02, acc["space"]
    _, out, _ = cli("oracle", "check", "--json", "--n", 16)
    assert "space" not in json.loads(out)  # the shipped oracle has no such class
    code, _, err = cli("oracle", "check", "--oracle", tmp_path / "none.safetensors")
    assert code == 2 and "no oracles at" in err


def test_classify_reads_files_and_folders(cli, tmp_path):
    cli("world", "--n", 8, "--out", tmp_path / "w", "--seed", 5)
    code, out, _ = cli("oracle", "classify", "--json", tmp_path / "w" / "00000.png", tmp_path / "w")
    preds = json.loads(out)
    assert code == 0 and len(preds) == 1 + 9  # one file + the folder's 8 images and its grid
    rows = [json.loads(x) for x in (tmp_path / "w" / "metadata.jsonl").read_text().splitlines()]
    by_file = {p["file"]: p for p in preds}
    right = sum(by_file[str(tmp_path / "w" / r["file"])]["style"] == r["style"] for r in rows)
    assert right >= 7
    assert all(0 <= p["content_prob"] <= 1 for p in preds)


def test_classify_refuses_non_images(cli, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    code, _, err = cli("oracle", "classify", bad)
    assert code == 2 and "cannot read image" in err
    code, _, err = cli("oracle", "classify", tmp_path / "missing.png")
    assert code == 2 and "no such file" in err
