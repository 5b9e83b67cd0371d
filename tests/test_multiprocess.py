"""Two CPU processes (gloo, launched by accelerate) train the same adapter as one process, and split generation."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from styledrop import world
from styledrop.io import load_tensors

from .tiny import tiny_base


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_base(tmp_path_factory.mktemp("tiny"))


def _launch(args, processes):
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    if processes == 1:
        cmd = [sys.executable, "-m", "styledrop", *map(str, args)]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "styledrop", *map(str, args)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_two_processes_train_the_same_adapter_as_one(base, tmp_path):
    ref = tmp_path / "ref.png"
    Image.fromarray(world.sample(0, 0, [("house", "lava")]).image).save(ref)
    outs = {}
    for k in (1, 2):
        outs[k] = tmp_path / f"p{k}.safetensors"
        _launch(["train", "--image", ref, "--style", "in lava style", "--out", outs[k], "--steps", 6, "--batch", 4,
                 "--lr", 0.01, "--base", base.path, "--device", "cpu"], k)
    one, meta1 = load_tensors(outs[1])
    two, meta2 = load_tensors(outs[2])
    assert meta2["processes"] == 2 and "processes" not in meta1
    assert any(v.abs().max() > 0 for k, v in one.items() if k.endswith("up.weight"))  # it trained
    for k in one:
        torch.testing.assert_close(two[k], one[k], atol=1e-5, rtol=1e-4)


def test_generation_is_split_across_processes_with_the_same_images(base, tmp_path):
    args = ["generate", "--prompt", "a cat", "--prompt", "a boat", "--n", 3, "--steps", 3, "--seed", 5,
            "--base", base.path, "--device", "cpu"]
    _launch([*args, "--out", tmp_path / "one"], 1)
    _launch([*args, "--out", tmp_path / "two"], 2)
    for i in range(6):
        a = np.asarray(Image.open(tmp_path / "one" / f"{i:04d}.png"))
        b = np.asarray(Image.open(tmp_path / "two" / f"{i:04d}.png"))
        assert (a == b).all()
    assert (tmp_path / "one" / "metadata.jsonl").read_text() == (tmp_path / "two" / "metadata.jsonl").read_text()


def _style_adapter(base, tmp_path):
    """A lava adapter trained in one process on one reference."""
    ref = tmp_path / "ref.png"
    Image.fromarray(world.sample(0, 0, [("house", "lava")]).image).save(ref)
    style = tmp_path / "style.safetensors"
    _launch(["train", "--image", ref, "--style", "in lava style", "--out", style, "--steps", 2, "--batch", 2,
             "--base", base.path, "--device", "cpu"], 1)
    return style


def test_sample_is_split_across_processes_with_the_same_images(base, tmp_path):
    style = _style_adapter(base, tmp_path)
    args = ["sample", "--adapter", style, "--prompt", "a cat", "--prompt", "a boat", "--n", 3, "--steps", 3,
            "--seed", 2, "--base", base.path, "--device", "cpu"]
    _launch([*args, "--out", tmp_path / "one"], 1)
    _launch([*args, "--out", tmp_path / "two"], 2)
    for i in range(6):
        a = np.asarray(Image.open(tmp_path / "one" / f"{i:04d}.png"))
        b = np.asarray(Image.open(tmp_path / "two" / f"{i:04d}.png"))
        assert (a == b).all(), i  # the union of the two shares is the one-process output
    assert (tmp_path / "one" / "metadata.jsonl").read_text() == (tmp_path / "two" / "metadata.jsonl").read_text()


def test_feedback_candidates_are_split_across_processes_and_round_2_matches_one_process(base, tmp_path):
    style = _style_adapter(base, tmp_path)
    outs = {}
    for k in (1, 2):
        outs[k] = tmp_path / f"r2-{k}.safetensors"
        _launch(["feedback", "--adapter", style, "--out", outs[k], "--select", "random", "--n-prompts", 2,
                 "--per-prompt", 3, "--steps", 3, "--base", base.path, "--device", "cpu"], k)
    for name in ("scores.jsonl", "0000.png", "0005.png"):  # the same candidates, written once
        one = (tmp_path / "r2-1.safetensors.rounds" / "round2" / name).read_bytes()
        assert one == (tmp_path / "r2-2.safetensors.rounds" / "round2" / name).read_bytes(), name
    one, _ = load_tensors(outs[1])
    two, _ = load_tensors(outs[2])
    for key in one:  # round 2 trained on the same pictures, its batches split across the two processes
        torch.testing.assert_close(two[key], one[key], atol=1e-5, rtol=1e-4)


def test_evaluate_style_is_split_across_processes_and_reports_the_same(base, tmp_path):
    import json
    style = _style_adapter(base, tmp_path)
    args = ["evaluate", "style", "--adapter", style, "--seeds", 1, "--steps", 3, "--base", base.path, "--device",
            "cpu", "--json"]
    one = json.loads(_launch(args, 1).stdout)
    two = json.loads(_launch(args, 2).stdout)  # only the first process prints
    for name in ("adapter", "base"):
        for key in ("style_acc", "content_acc", "leakage"):
            assert one[name][key] == two[name][key], (name, key)
        assert abs(one[name]["fid"] - two[name]["fid"]) < 1e-6
