"""End-to-end checks on the shipped tiny base (slow: minutes on 2 cores)."""

import json

import pytest

from styledrop import world
from styledrop.evaluate import oracle_scores
from styledrop.muse.base import DEFAULT_BASE, MuseBase
from styledrop.muse.sampler import SampleConfig, generate
from styledrop.oracle import Oracles

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (DEFAULT_BASE / "model_index.json").is_file(), reason="no shipped base")]


def test_shipped_base_draws_seen_pairs_deterministically():
    base = MuseBase.load()
    pairs = world.pairs("pretrain")[::12]
    prompts = [world.caption(c, s) for c, s in pairs]
    images = generate(base, prompts, SampleConfig(steps=12, seed=0))
    again = generate(base, prompts[:2], SampleConfig(steps=12, seed=0))
    assert (images[:2] == again).all()
    scores = oracle_scores(Oracles.load(), images, [c for c, _ in pairs], [s for _, s in pairs])
    assert scores["style_acc"] >= 0.8, scores
    assert scores["content_acc"] >= 0.6, scores  # 0.91 on 192 images; chance is 1/16


def test_demo_runs_end_to_end(cli, tmp_path):
    code, _, err = cli("demo", "--out", tmp_path / "demo", "--steps", 40)
    assert code == 0, err
    rows = [json.loads(x) for x in (tmp_path / "demo" / "samples" / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and (tmp_path / "demo" / "style.safetensors").is_file()
    assert "oracle on the 16 pictures, StyleDrop" in err and (tmp_path / "demo" / "index.html").is_file()
