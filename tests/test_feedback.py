import json

import numpy as np
import pytest

from styledrop import adapters, world
from styledrop.feedback import FeedbackConfig, content_prompts, select

from .tiny import tiny_base


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_base(tmp_path_factory.mktemp("tiny"))


def _rows(per_prompt, contents, style):
    rows, k = [], 0
    for c in contents:
        for j in range(per_prompt):
            rows.append({"id": k, "prompt": world.caption(c, None), "clip_t": float(j == 2), "clip_i": float(j == 3),
                         "oracle": {"content": c if j in (1, 2) else "house", "content_prob": 0.5 + j / 10,
                                    "style": style, "style_prob": 1.0}})
            k += 1
    return rows


def test_selection_methods():
    contents = ["fish", "cat", "boat"]
    rows = _rows(4, contents, "lava")
    pick = lambda **kw: select(rows, contents, "lava", FeedbackConfig(per_prompt=4, **kw))  # noqa: E731
    assert pick(select="clip") == [2, 6, 10]
    assert pick(select="clip", clip_i_weight=2.0) == [3, 7, 11]
    # oracle: right content and style, most confident first, at most `keep`
    assert pick(select="oracle") == [2, 6, 10, 1, 5, 9] and len(pick(select="oracle", keep=2)) == 2
    assert len(pick(select="random")) == 3 and pick(select="random") == pick(select="random")
    assert select(rows, contents, "lava", FeedbackConfig(select="manual", per_prompt=4), [5, 1, 5]) == [1, 5]
    with pytest.raises(ValueError, match="out of range"):
        select(rows, contents, "lava", FeedbackConfig(select="manual", per_prompt=4), [99])
    with pytest.raises(ValueError, match="unknown selection"):
        FeedbackConfig(select="best")


def test_prompts_leave_out_the_reference_content():
    pairs = content_prompts(30, "house")
    assert len(pairs) == 30 and "house" not in {c for c, _ in pairs}


def test_feedback_command_trains_a_new_adapter_and_saves_every_round(cli, base, tmp_path):
    ref = tmp_path / "ref.png"
    from PIL import Image
    Image.fromarray(world.sample(0, 0, [("house", "lava")]).image).save(ref)
    r1 = tmp_path / "r1.safetensors"
    assert cli("train", "--image", ref, "--style", "in molten lava style", "--content", "a house", "--out", r1,
               "--steps", 2, "--batch", 2, "--base", base.path)[0] == 0
    r2 = tmp_path / "r2.safetensors"
    code, _, err = cli("feedback", "--adapter", r1, "--out", r2, "--select", "random", "--n-prompts", 2,
                       "--per-prompt", 2, "--steps", 2, "--rounds", 2, "--base", base.path)
    assert code == 0, err
    _, meta = adapters.load(r2, base)
    assert meta["round"] == 3 and meta["feedback"]["select"] == "random"
    for k in (2, 3):
        rows = [json.loads(x) for x in (tmp_path / f"r2.safetensors.rounds/round{k}/scores.jsonl").read_text()
                .splitlines()]
        assert len(rows) == 4 and sum(r["kept"] for r in rows) == 2 and "clip_t" in rows[0]
    code, _, err = cli("feedback", "--adapter", r1, "--out", tmp_path / "x.safetensors", "--select", "manual",
                       "--base", base.path)
    assert code == 2 and "--ids" in err and not (tmp_path / "x.safetensors").exists()
    assert np.isfinite(meta["train"]["steps"])

    # the toy base's own scorer and the oracles, with the toy FID against real renders of the reference's style
    code, out, err = cli("evaluate", "style", "--adapter", r2, "--seeds", 2, "--steps", 2, "--base", base.path,
                         "--json")
    assert code == 0, err
    report = json.loads(out)
    others = [c for c in world.PRETRAIN_CONTENTS if c != report["reference"]["content"]]
    assert report["n"] == 2 * len(others)
    assert {"style_acc", "content_acc", "leakage", "clip_t", "clip_i", "fid"} == set(report["adapter"])
    assert report["fid_floor"] < report["adapter"]["fid"] and report["fid_vq"] > 0


def test_feedback_refuses_keep_above_n_and_an_empty_selection(cli, base, tmp_path):
    ref = tmp_path / "ref.png"
    from PIL import Image
    Image.fromarray(world.sample(0, 0, [("house", "lava")]).image).save(ref)
    r1 = tmp_path / "r1.safetensors"
    assert cli("train", "--image", ref, "--style", "in molten lava style", "--out", r1,
               "--steps", 2, "--batch", 2, "--base", base.path)[0] == 0
    out = tmp_path / "r2.safetensors"
    code, _, err = cli("feedback", "--adapter", r1, "--out", out, "--select", "oracle", "--keep", 5,
                       "--n-prompts", 2, "--per-prompt", 2, "--base", base.path)
    assert code == 2 and "--keep 5 is more than the 4 images" in err and not out.exists()


def test_retrain_refuses_when_nothing_was_kept(base):
    from styledrop.feedback import retrain
    from styledrop.io import UserError
    from styledrop.train import TrainConfig
    ref = world.sample(0, 0, [("house", "lava")]).image
    with pytest.raises(UserError, match="kept no image"):
        retrain(base, adapters.AdapterConfig(), {"style": "in lava style"}, [ref], [ref], [{"prompt": "a cat"}], [],
                TrainConfig(steps=1))
