"""The studio keeps its work: runs on disk survive a restart and a kill, nothing is overwritten; no page frames it."""

import hashlib
import http.server
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from styledrop import adapters, world
from styledrop.ui import runs
from styledrop.ui.app import SECURITY_HEADERS, create_app
from styledrop.ui.studio import Studio

from .browser import chromium, needs_chromium
from .tiny import tiny_base

ORIGIN = "http://127.0.0.1:7860"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_base(tmp_path_factory.mktemp("tiny"))


def _png(style="pop_art") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(world.render("fish", style, np.random.default_rng(0))).save(buf, "PNG")
    return buf.getvalue()


def _client(studio):
    return TestClient(create_app(studio), base_url=ORIGIN, headers={"Origin": ORIGIN})


def _idle(get_status, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        s = get_status()
        if not s["running"] and not s["queue"]:
            return s
        time.sleep(0.05)
    raise AssertionError("the queue did not empty")


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != runs.STATE}


def test_a_new_studio_continues_the_last_run_and_overwrites_nothing(base, tmp_path):
    workdir = tmp_path / "ui"
    studio = Studio(base, workdir)
    client = _client(studio)
    client.post("/api/uploads/references", files=[("files", ("ref.png", _png(), "image/png"))])
    assert client.post("/api/train", json={"descriptor": "in pop art style", "content": "a fish",
                                           "steps": 2}).status_code == 202
    _idle(lambda: client.get("/api/status").json())
    client.post("/api/generate", json={"prompt": "a boat", "n": 2, "seed": 3})
    client.post("/api/picks", json={"ids": [1]})
    assert client.post("/api/round2", json={"ids": [1], "steps": 2}).status_code == 202
    _idle(lambda: client.get("/api/status").json())
    before = client.get("/api/state").json()
    files = _hashes(studio.dir)
    studio.shutdown()

    again = Studio(base, workdir)  # a restart: the same run, read back from its state.json
    client = _client(again)
    after = client.get("/api/state").json()
    for key in ("run", "references", "rounds", "round", "descriptor", "content", "images", "picks", "adapter"):
        assert after[key] == before[key], key
    assert client.get("/api/adapter", params={"round": 1}).status_code == 200
    assert client.get(after["images"][0]["url"]).status_code == 200
    # new work goes to new files: a new round 1 and two pictures; every old file is byte-identical
    client.post("/api/uploads/references", files=[("files", ("ref2.png", _png("lava"), "image/png"))])
    client.post("/api/train", json={"descriptor": "in lava style", "steps": 2})
    _idle(lambda: client.get("/api/status").json())
    client.post("/api/generate", json={"prompt": "a cat", "n": 2})
    assert {k: v for k, v in _hashes(again.dir).items() if k in files} == files
    assert len(_hashes(again.dir)) == len(files) + 4  # a reference, an adapter, two pictures
    assert [im["id"] for im in client.get("/api/state").json()["images"]] == [0, 1, 2, 3]

    # a new run starts empty beside the old one, which the page lists and can open again
    fresh = client.post("/api/runs").json()
    assert fresh["run"] != before["run"] and fresh["rounds"] == [] and fresh["references"] == []
    listed = client.get("/api/state").json()["runs"]
    assert [r["id"] for r in listed] == [fresh["run"], before["run"]] and listed[1]["rounds"] == [1]
    assert client.post("/api/runs/open", json={"id": before["run"]}).json()["rounds"] == [1]
    client.post("/api/picks", json={"ids": [0]})  # work in the reopened run: it is the one continued next time
    again.shutdown()
    again = Studio(base, workdir)
    assert again.status()["run"] == before["run"]
    client = _client(again)
    for bad in ("../ui", "nope", ".", ""):
        r = client.post("/api/runs/open", json={"id": bad})
        assert r.status_code == 400 and "no studio run" in r.json()["error"], bad
    again.shutdown()

    # a corrupt state is named, and the studio starts a new run instead of dying
    (again.dir / runs.STATE).write_text("{ not json")
    with pytest.raises(Exception, match="cannot read studio run"):
        runs.load(again.dir)
    log = []
    third = Studio(base, workdir, log=log.append)
    assert third.dir != again.dir and third.status()["references"] == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(base, workdir: Path, port: int, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "styledrop", "ui", "--base", str(base.path), "--workdir",
                             str(workdir), "--port", str(port)], stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            env=os.environ | {"OMP_NUM_THREADS": "1"})
    end = time.time() + 120
    while time.time() < end:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/status", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"the studio did not start: {log.read_text()[-2000:]}")


@pytest.mark.slow
def test_killed_mid_training_the_studio_comes_back_with_everything_and_marks_the_training(base, tmp_path):
    workdir, port, log = tmp_path / "ui", _free_port(), tmp_path / "server.log"
    url = f"http://127.0.0.1:{port}"
    proc = _serve(base, workdir, port, log)
    try:
        c = httpx.Client(base_url=url, headers={"Origin": url}, timeout=120)
        c.post("/api/uploads/references", files=[("files", ("ref.png", _png(), "image/png"))])
        c.post("/api/train", json={"descriptor": "in pop art style", "steps": 2})
        _idle(lambda: c.get("/api/status").json())
        c.post("/api/generate", json={"prompt": "a boat", "n": 2})
        c.post("/api/picks", json={"ids": [0]})
        assert c.post("/api/train", json={"descriptor": "in lava style", "steps": 5000}).status_code == 202
        end = time.time() + 60  # until the state on disk holds a step of the long training
        folder = next(runs.runs_dir(workdir).iterdir())
        while time.time() < end and runs.load(folder)["trainings"][-1]["step"] < 3:
            time.sleep(0.1)
        before, files = runs.load(folder), _hashes(folder)
        os.kill(proc.pid, signal.SIGKILL)  # no chance to clean up
        proc.wait(10)
        last_step = before["trainings"][-1]["step"]
        assert before["trainings"][-1]["state"] == "running" and last_step >= 3

        proc = _serve(base, workdir, port, log)
        s = c.get("/api/state").json()
        assert s["run"] == before["id"] and _hashes(folder) == files  # every file there, byte-identical
        cut = s["trainings"][-1]
        assert cut["state"] == "interrupted" and cut["step"] >= last_step and cut["total"] == 5000
        assert s["descriptor"] == "in pop art style" and s["picks"] == [0] and len(s["images"]) == 2
        assert "interrupted at step" in log.read_text()
        assert c.get("/api/adapter", params={"round": 1}).content == (folder / before["rounds"]["1"]).read_bytes()

        # started again with its settings (shorter here: the same call), and new work goes to new files
        restarted = c.post("/api/restart", json={"id": cut["id"]})
        assert restarted.status_code == 202 and restarted.json()["job"]["params"]["descriptor"] == "in lava style"
        c.post("/api/cancel")
        _idle(lambda: c.get("/api/status").json())
        c.post("/api/train", json={"descriptor": "in lava style", "steps": 2})
        _idle(lambda: c.get("/api/status").json())
        c.post("/api/generate", json={"prompt": "a cat", "n": 1})
        now = _hashes(folder)
        assert {k: v for k, v in now.items() if k in files} == files and len(now) == len(files) + 2

        # a polite stop (TERM) mid-training says what it cut off, in the log and in the state
        assert c.post("/api/train", json={"descriptor": "in lava style", "steps": 5000}).status_code == 202
        end = time.time() + 60
        while time.time() < end and not (c.get("/api/status").json()["running"] or {}).get("step"):
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) in (0, -signal.SIGTERM)  # uvicorn stops gracefully, then re-raises the TERM
        last = runs.load(folder)["trainings"][-1]
        assert last["state"] == "interrupted" and 0 < last["step"] < 5000
        assert f"interrupted at step {last['step']}/5000 by the stop" in log.read_text()
    finally:
        proc.kill()


def test_every_answer_forbids_framing_and_the_page_has_no_inline_script(base, tmp_path):
    client = _client(Studio(base, tmp_path / "ui"))
    for path in ("/", "/api/status", "/static/page.js", "/api/files/images/0.png", "/api/nothing"):
        r = client.get(path)
        for name, value in SECURITY_HEADERS.items():
            assert r.headers.get(name) == value, (path, name)
    assert "frame-ancestors 'none'" in SECURITY_HEADERS["Content-Security-Policy"]
    assert "unsafe-inline" not in SECURITY_HEADERS["Content-Security-Policy"]
    page = client.get("/").text
    assert "<script>" not in page and "<style>" not in page and " onclick=" not in page and " style=" not in page
    r = TestClient(create_app(Studio(base, tmp_path / "ui2")), base_url="http://evil.example").get("/")
    assert r.status_code == 400 and r.headers["x-frame-options"] == "DENY"  # refusals carry them too
    assert client.get("/static/../app.py").status_code == 404


@needs_chromium
def test_chromium_refuses_to_show_the_studio_in_another_sites_frame(base, tmp_path):
    import uvicorn
    from selenium.webdriver.common.by import By

    studio_port, other_port = _free_port(), _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(Studio(base, tmp_path / "ui")), host="127.0.0.1",
                                           port=studio_port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    framer = tmp_path / "framer"
    framer.mkdir()
    # the attacker's page frames the studio; a control frame of the attacker's own page shows that frames load
    (framer / "index.html").write_text(f'<iframe id="studio" src="http://127.0.0.1:{studio_port}/"></iframe>'
                                       '<iframe id="own" src="/own.html"></iframe>')
    (framer / "own.html").write_text('<button id="train-btn">a frame that loads</button>')
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(framer))  # noqa: E731
    other = http.server.ThreadingHTTPServer(("127.0.0.1", other_port), handler)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    driver = chromium()
    try:
        driver.get(f"http://127.0.0.1:{other_port}/index.html")
        time.sleep(1.5)
        driver.switch_to.frame(driver.find_element(By.ID, "own"))
        assert driver.find_elements(By.ID, "train-btn")  # frames do load here
        driver.switch_to.default_content()
        driver.switch_to.frame(driver.find_element(By.ID, "studio"))
        assert not driver.find_elements(By.ID, "train-btn") and not driver.find_elements(By.ID, "ref-files")
        driver.switch_to.default_content()
        driver.get(f"http://127.0.0.1:{studio_port}/")  # the studio itself, at top level, works
        assert driver.find_elements(By.ID, "train-btn")
        logs = json.dumps(driver.get_log("browser")) if hasattr(driver, "get_log") else ""
        assert "Content Security Policy" not in logs or "frame-ancestors" in logs  # the page runs under its CSP
    finally:
        driver.quit()
        other.shutdown()
        server.should_exit = True
        thread.join(10)


def test_an_adapter_keeps_loading_after_a_restart(base, tmp_path):
    studio = Studio(base, tmp_path / "ui")
    client = _client(studio)
    client.post("/api/uploads/subject", files=[("files", (f"s{i}.png", _png(), "image/png")) for i in range(2)])
    client.post("/api/train-subject", json={"class_noun": "fish", "steps": 2})
    _idle(lambda: client.get("/api/status").json())
    studio.shutdown()
    again = Studio(base, tmp_path / "ui")
    assert again.status()["subject"] == "a [v] fish"
    path, name = again.adapter_file("subject")
    assert name == "styledrop-subject.safetensors" and adapters.load(path, base)[1]["role"] == "subject"
