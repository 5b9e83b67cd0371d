import json

import pytest

from styledrop import adapters, world
from styledrop.feedback import FeedbackConfig, content_prompts, retrain, round_steps, select

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


def test_round_two_trains_longer_as_its_pictures_grow(base):
    assert [round_steps(200, n) for n in (1, 4, 6, 8, 11, 30)] == [200, 200, 300, 400, 400, 400]
    images = [world.sample(k, 0, [("fish", "lava")]).image for k in range(11)]
    rows = [{"id": i, "prompt": "a fish"} for i in range(10)]
    from styledrop.train import TrainConfig
    cfg = adapters.AdapterConfig("bottleneck", 4)
    steps = []
    new, captions, n = retrain(base, cfg, {"style": "in lava style"}, images[:1], images[1:], rows, list(range(10)),
                               TrainConfig(steps=3, batch=2), progress=lambda i, total, lo: steps.append(total))
    assert n == 6 and set(steps) == {6} and len(captions) == 11 and captions[1] == "a fish in lava style"
    _, _, n = retrain(base, cfg, {"style": "in lava style"}, images[:1], images[1:], rows, list(range(10)),
                      TrainConfig(steps=3, batch=2), scale_steps=False)
    assert n == 3


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
        assert sorted(p.name for p in (tmp_path / f"r2.safetensors.rounds/round{k}").glob("0*.png")) == [
            f"{i:04d}.png" for i in range(4)]
    assert [p.name for p in (tmp_path / "r2.safetensors.rounds").iterdir()] != [] and not list(
        (tmp_path / "r2.safetensors.rounds").glob(".*"))  # the drawing folders are gone once each round is written
    code, _, err = cli("feedback", "--adapter", r1, "--out", tmp_path / "x.safetensors", "--select", "manual",
                       "--base", base.path)
    assert code == 2 and "--ids" in err and not (tmp_path / "x.safetensors").exists()
    assert meta["train"]["steps"] == 2  # --steps given: every round trains exactly that many

    # the toy base's own scorer and the oracles, with the toy FID against real renders of the reference's style
    code, out, err = cli("evaluate", "style", "--adapter", r2, "--seeds", 2, "--steps", 2, "--base", base.path,
                         "--json")
    assert code == 0, err
    report = json.loads(out)
    others = [c for c in world.PRETRAIN_CONTENTS if c != report["reference"]["content"]]
    assert report["n"] == 2 * len(others)
    assert {"style_acc", "content_acc", "leakage", "clip_t", "clip_i", "fid"} == set(report["adapter"])
    assert report["fid_floor"] < report["adapter"]["fid"] and report["fid_vq"] > 0
    # a second judge reads the same pictures: the shipped oracles as their own second judge agree to the digit
    code, out, err = cli("evaluate", "style", "--adapter", r2, "--seeds", 2, "--steps", 2, "--base", base.path,
                         "--second-oracle", "shipped", "--json")
    again = json.loads(out)
    assert code == 0 and again["adapter"]["second"] == {k: report["adapter"][k] for k in (
        "style_acc", "content_acc", "leakage")}, err
    code, _, err = cli("evaluate", "style", "--adapter", r2, "--seeds", 1, "--steps", 2, "--base", base.path,
                       "--second-oracle", "space")
    assert code == 0 and "second oracle: style_acc" in err


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


def test_candidates_go_to_disk_a_chunk_at_a_time_and_read_back_as_drawn(base, tmp_path, monkeypatch):
    """A round's candidates are written as they are drawn and read back one at a time: the pictures equal one
    in-memory draw of the same prompts and seeds, and no draw ever asks for more than one chunk."""
    from styledrop import feedback
    from styledrop.io import PictureFolder
    from styledrop.muse.sampler import SampleConfig, generate, guided_logits_fn
    theta = adapters.build(adapters.AdapterConfig(), base.transformer, base)
    cfg = FeedbackConfig(prompts=3, per_prompt=3, steps=2, seed=5)
    monkeypatch.setattr(feedback, "max_prompts", lambda base, batch: 4)  # 9 pictures in chunks of 4, 4 and 1
    sizes = []
    real = feedback.generate
    monkeypatch.setattr(feedback, "generate", lambda b, ps, *a, **k: sizes.append(len(ps)) or real(b, ps, *a, **k))
    texts = ["a cat", "a boat", "a tree"]
    pictures = feedback.generate_candidates(base, theta, "in lava style", texts, cfg, tmp_path / "drawn")
    assert isinstance(pictures, PictureFolder) and len(pictures) == 9 and sizes == [4, 4, 1]
    full = [f"{t} in lava style" for t in texts for _ in range(3)]
    with adapters.attached(theta, base.transformer):
        expected = generate(base, full, SampleConfig(steps=2, seed=5), logits_fn_for=lambda qs: guided_logits_fn(
            base, qs, lambda_b=cfg.lambda_b, adapter=theta, lambda_a=cfg.lambda_a))
    assert all((pictures[i] == expected[i]).all() for i in range(9))
    rows = feedback.score(None, None, pictures, texts, 3, expected[0])
    assert [r["prompt"] for r in rows] == [t for t in texts for _ in range(3)]


def test_picture_folder_reads_back_what_was_written_and_slices_like_a_list(tmp_path):
    from styledrop.io import PictureFolder
    ims = [world.sample(0, i, [("cat", "lava")]).image for i in range(3)]
    folder = PictureFolder(tmp_path, 3)
    for i, im in enumerate(ims):
        folder.write(i, im)
    assert len(folder) == 3 and (folder[-1] == ims[2]).all() and (folder[1] == ims[1]).all()
    assert [x.shape for x in folder[1:]] == [(64, 64, 3)] * 2 and len(list(folder)) == 3
    with pytest.raises(IndexError):
        folder[3]
    grid = world.grid(folder, cols=3, cell=32)  # shrunk cells, read one picture at a time
    assert grid.size == (3 * 34 + 2, 34 + 2)
    assert world.grid(folder, cols=3).size == (3 * 66 + 2, 66 + 2)


def test_feedback_rates_with_the_oracles_asked_for(cli, base, tmp_path):
    from PIL import Image

    from styledrop.io import load_image
    from styledrop.oracle import SPACE_ORACLE_PATH, Oracles
    ref = tmp_path / "ref.png"
    Image.fromarray(world.sample(0, 0, [("house", "pop_art")]).image).save(ref)
    r1 = tmp_path / "r1.safetensors"
    assert cli("train", "--image", ref, "--style", "in pop art style", "--out", r1, "--steps", 1, "--batch", 2,
               "--base", base.path)[0] == 0
    code, _, err = cli("feedback", "--adapter", r1, "--out", tmp_path / "r2.safetensors", "--select", "random",
                       "--rater", "space", "--n-prompts", 1, "--per-prompt", 2, "--steps", 1, "--base", base.path)
    assert code == 0, err
    folder = tmp_path / "r2.safetensors.rounds" / "round2"
    rows = [json.loads(x) for x in (folder / "scores.jsonl").read_text().splitlines()]
    pictures = [load_image(folder / f"{r['id']:04d}.png")[0] for r in rows]
    assert [r["oracle"] for r in rows] == Oracles.load(SPACE_ORACLE_PATH).classify(pictures)
    code, _, err = cli("feedback", "--adapter", r1, "--out", tmp_path / "x.safetensors", "--select", "oracle",
                       "--rater", tmp_path / "none.safetensors", "--base", base.path)
    assert code == 2 and "no oracles at" in err and not (tmp_path / "x.safetensors").exists()
