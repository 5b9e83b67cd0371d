"""The web UI: the workflow over HTTP, and the whole of it driven in headless Chromium."""

import io
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from styledrop import adapters, world
from styledrop.io import load_tensors
from styledrop.ui.app import create_app
from styledrop.ui.studio import Studio

from .browser import chromium, needs_chromium
from .tiny import tiny_base


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_base(tmp_path_factory.mktemp("tiny"))


def _png(size=64, mode="RGB") -> bytes:
    image = Image.fromarray(world.render("fish", "pop_art", np.random.default_rng(0)))
    buf = io.BytesIO()
    image.resize((size, size)).convert(mode).save(buf, format="PNG")
    return buf.getvalue()


def _client(studio, **kw):
    """The page's own view of the server: its host, and a same-origin Origin on every request."""
    origin = "http://127.0.0.1:7860"
    return TestClient(create_app(studio, **kw), base_url=origin, headers={"Origin": origin})


def _wait_job(client, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        s = client.get("/api/status").json()
        if not s["running"] and not s["queue"]:
            return s["job"]
        time.sleep(0.05)
    raise AssertionError("training did not finish")


def test_workflow_over_http(base, tmp_path):
    studio = Studio(base, tmp_path / "ui")
    client = _client(studio)
    assert "styledrop" in client.get("/").text

    # bad input: nothing to train on, then a file that is not an image -> 400, nothing added
    r = client.post("/api/train", json={"descriptor": "in pop art style", "steps": 3})
    assert r.status_code == 400 and "reference" in r.json()["error"]
    r = client.post("/api/uploads/references", files=[("files", ("notes.txt", b"hello", "text/plain"))])
    assert r.status_code == 400 and "notes.txt" in r.json()["error"]
    r = client.post("/api/uploads/references", files=[("files", ("ok.png", _png(), "image/png")),
                                              ("files", ("bad.png", b"\x89PNG broken", "image/png"))])
    assert r.status_code == 400 and studio.status()["references"] == []
    # a grey 100x100 image is converted and resized, with notes
    r = client.post("/api/uploads/references", files=[("files", ("ref.png", _png(100, "L"), "image/png"))])
    assert r.status_code == 200 and r.json()["count"] == 1
    assert any("resized" in n for n in r.json()["notes"]) and any("converted L" in n for n in r.json()["notes"])
    assert client.get(client.get("/api/status").json()["references"][0]).headers["content-type"] == "image/png"

    assert client.post("/api/generate", json={"prompt": "a boat"}).status_code == 400  # no adapter yet
    assert client.post("/api/train", json={"descriptor": " ", "steps": 3}).status_code == 400
    r = client.post("/api/train", json={"descriptor": "in pop art style", "content": "a fish", "steps": 3})
    assert r.status_code == 202
    job = _wait_job(client)
    assert job["state"] == "done" and job["step"] == 3 and job["loss"] is not None

    r = client.post("/api/generate", json={"prompt": "a boat", "n": 3, "seed": 1})
    ids = [im["id"] for im in r.json()["images"]]
    assert r.status_code == 200 and ids == [0, 1, 2]
    png = client.get(r.json()["images"][0]["url"])
    assert Image.open(io.BytesIO(png.content)).size == (base.image_size, base.image_size)
    assert client.post("/api/generate", json={"prompt": ""}).status_code == 400

    assert client.post("/api/round2", json={"ids": [], "steps": 3}).status_code == 400
    assert "unknown image ids" in client.post("/api/round2", json={"ids": [42], "steps": 3}).json()["error"]
    assert client.post("/api/round2", json={"ids": [0, 2], "steps": 3}).status_code == 202
    assert _wait_job(client)["kind"] == "round 2"
    r = client.get("/api/adapter")
    assert r.status_code == 200 and "round2" in r.headers["content-disposition"]
    path = tmp_path / "downloaded.safetensors"
    path.write_bytes(r.content)
    theta, meta = adapters.load(path, base)
    assert meta["train"]["round"] == 2 and meta["train"]["images"] == 3 and meta["style"] == "in pop art style"


def test_a_second_training_and_a_generation_wait_their_turn(base, tmp_path):
    studio = Studio(base, tmp_path / "ui")
    client = _client(studio)
    client.post("/api/uploads/references", files=[("files", ("ref.png", _png(), "image/png"))])
    first = client.post("/api/train", json={"descriptor": "in pop art style", "steps": 60})
    assert first.status_code == 202
    second = client.post("/api/train", json={"descriptor": "in lava style", "steps": 3})
    assert second.status_code == 202 and second.json()["job"]["state"] == "queued"
    s = client.get("/api/status").json()
    assert s["queue"][-1]["kind"] == "round 1" and s["queue"][-1]["position"] >= 1
    assert s["busy"].startswith("round 1 is training")
    # a generation asked while round 1 trains waits for it, then draws in the style of the latest round 1
    r = client.post("/api/generate", json={"prompt": "a boat", "n": 2})
    assert r.status_code == 200 and len(r.json()["images"]) == 2
    job = _wait_job(client)
    assert job["state"] == "done" and job["total"] == 3
    assert adapters.load(studio.adapter_file()[0], base)[1]["style"] == "in lava style"
    trainings = client.get("/api/status").json()["trainings"]
    assert [(t["state"], t["total"]) for t in trainings] == [("done", 60), ("done", 3)]
    assert trainings[0]["file"] != trainings[1]["file"]  # the second round 1 did not overwrite the first


def test_subject_tab_over_http(base, tmp_path):
    studio = Studio(base, tmp_path / "ui")
    client = _client(studio)
    client.post("/api/uploads/references", files=[("files", ("ref.png", _png(), "image/png"))])
    assert client.post("/api/train", json={"descriptor": "in pop art style", "steps": 2}).status_code == 202
    _wait_job(client)
    r = client.post("/api/train-subject", json={"class_noun": "rocket", "steps": 2})
    assert r.status_code == 400 and "subject" in r.json()["error"]  # no subject images yet
    files = [("files", (f"s{i}.png", _png(), "image/png")) for i in range(3)]
    assert client.post("/api/uploads/subject", files=files).json()["count"] == 3
    assert client.post("/api/train-subject", json={"class_noun": " ", "steps": 2}).status_code == 400
    assert client.post("/api/train-subject", json={"class_noun": "rocket", "steps": 2}).status_code == 202
    assert _wait_job(client)["kind"] == "subject"
    assert client.get("/api/status").json()["subject"] == "a [v] rocket"
    r = client.post("/api/generate", json={"prompt": "a [v] rocket", "n": 2, "subject": True, "gamma": 0.6,
                                           "style_round": 1})
    assert r.status_code == 200 and len(r.json()["images"]) == 2
    assert client.post("/api/generate", json={"prompt": "a [v] rocket", "subject": True, "gamma": 2}).status_code == 400
    assert client.post("/api/generate", json={"prompt": "a boat", "style_round": 7}).status_code == 400
    r = client.get("/api/adapter", params={"which": "subject"})
    path = tmp_path / "subject.safetensors"
    path.write_bytes(r.content)
    assert adapters.load(path, base)[1]["role"] == "subject"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(base, tmp_path):
    import uvicorn
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(Studio(base, tmp_path / "ui")), host="127.0.0.1", port=port,
                                        log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


SHOTS = os.environ.get("STYLEDROP_SCREENSHOTS")  # a folder: the browser test saves each state there (docs/studio)


def shot(driver, name: str) -> None:
    if SHOTS:
        driver.save_screenshot(str(Path(SHOTS) / f"studio-{name}.png"))


def d_text(driver, id: str) -> str:
    from selenium.webdriver.common.by import By
    return driver.find_element(By.ID, id).text


@needs_chromium
def test_browser_whole_flow_with_reload(server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = chromium(downloads, size=(1280, 800))
    wait = WebDriverWait(driver, 120)
    state = lambda d, id: d.find_element(By.ID, id).get_attribute("data-state")  # noqa: E731
    try:
        driver.get(server)
        ref = tmp_path / "ref.png"
        ref.write_bytes(_png(100))
        bad = tmp_path / "notes.txt"
        bad.write_text("not an image")
        driver.find_element(By.ID, "ref-files").send_keys(str(bad))
        wait.until(lambda d: "notes.txt" in d.find_element(By.ID, "err-refs").text)  # beside the upload
        assert "BytesIO" not in driver.find_element(By.ID, "err-refs").text and not d_text(driver, "error")
        driver.find_element(By.ID, "ref-files").send_keys(str(ref))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#refs img")) == 1)
        assert "resized 100x100" in driver.find_element(By.ID, "ref-notes").text  # the note stays readable
        shot(driver, "1-reference")

        driver.find_element(By.ID, "descriptor").send_keys("in pop art style")
        steps = driver.find_element(By.ID, "steps")
        steps.clear()
        steps.send_keys("4")
        driver.find_element(By.ID, "train-btn").click()
        wait.until(lambda d: state(d, "status") == "done")
        assert driver.find_element(By.ID, "progress").get_attribute("value") == "4"
        assert driver.find_element(By.ID, "busy").text == "" and driver.find_element(By.ID, "error").text == ""

        # the main elements are on screen at 1280x800
        for id in ("ref-files", "train-btn", "descriptor", "refs"):
            el = driver.find_element(By.ID, id)
            assert el.is_displayed() and el.rect["x"] + el.rect["width"] <= 1280, id
        driver.save_screenshot(str(tmp_path / "studio.png"))
        assert (tmp_path / "studio.png").stat().st_size > 10_000
        shot(driver, "2-trained")

        driver.find_element(By.ID, "prompt").send_keys("a boat")
        n = driver.find_element(By.ID, "n")
        n.clear()
        n.send_keys("3")
        assert driver.find_element(By.ID, "lambda-a-value").text == "0.5"  # the sliders show their defaults
        driver.find_element(By.ID, "generate-btn").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "input.pick")) == 3)
        captions = [f.text for f in driver.find_elements(By.CSS_SELECTOR, ".batch figcaption")]
        for words in ("seed 0", "round 1", "λA 0.5", "λB 1", "12 steps"):  # what it takes to make it again
            assert words in captions[0], (words, captions[0])
        assert "round 1" in driver.find_element(By.CSS_SELECTOR, ".batch h3").text
        shot(driver, "3-generated")
        picks = driver.find_elements(By.CSS_SELECTOR, "input.pick")
        picks[0].click()
        picks[2].click()
        wait.until(lambda d: d.find_element(By.ID, "picked").text == "2 ticked")
        driver.find_element(By.CSS_SELECTOR, ".batch img").click()  # enlarge
        wait.until(lambda d: d.find_element(By.ID, "lightbox").is_displayed())
        assert driver.find_element(By.ID, "lightbox-img").size["width"] == 512
        driver.find_element(By.ID, "lightbox").click()

        # restyle a picture: the input is shown beside its restyled versions
        driver.find_element(By.ID, "restyle-file").send_keys(str(ref))
        n_restyle = driver.find_element(By.ID, "restyle-n")
        n_restyle.clear()
        n_restyle.send_keys("2")
        driver.find_element(By.ID, "restyle-content").send_keys("a house")  # what it shows, its own field
        driver.find_element(By.ID, "restyle-btn").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "input.pick")) == 5)
        newest = driver.find_elements(By.CSS_SELECTOR, ".batch")[0]
        assert "restyled at strength 0.6" in newest.text and newest.find_element(By.CSS_SELECTOR, "figure.input")
        assert "“a house in " in newest.text  # the picture's content, then the style
        picks = driver.find_elements(By.CSS_SELECTOR, "input.pick")
        picks[2].click()  # the restyled ones come first now; untick and re-tick by id below
        picks[2].click()

        # a reload keeps the gallery, the ticks and the descriptor the server holds
        driver.refresh()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "input.pick")) == 5)
        ticked = [int(c.get_attribute("data-id")) for c in driver.find_elements(By.CSS_SELECTOR, "input.pick")
                  if c.is_selected()]
        assert sorted(ticked) == [0, 2]
        assert driver.find_element(By.ID, "descriptor").get_attribute("value") == "in pop art style"
        assert driver.find_element(By.ID, "round2-btn").text == "Train round 2"
        assert driver.find_element(By.ID, "status").text.startswith("round 1 done")  # not "no adapter yet"

        round_steps = driver.find_element(By.ID, "round2-steps")  # round 2 has its own steps
        round_steps.clear()
        round_steps.send_keys("3")
        driver.find_element(By.ID, "round2-btn").click()
        wait.until(lambda d: state(d, "round-status") == "done")
        assert driver.find_element(By.ID, "round2-btn").text == "Train round 3"  # the next one, named
        driver.find_element(By.CSS_SELECTOR, "#round-downloads a").click()
        wait.until(lambda d: any(p.suffix == ".safetensors" for p in downloads.iterdir()))
        got = next(p for p in downloads.iterdir() if p.suffix == ".safetensors")
        assert got.name == "styledrop-round2.safetensors"
        shutil.copy(got, tmp_path / "check.safetensors")

        # a long training shows who is busy, refuses generation in words, and can be cancelled
        steps = driver.find_element(By.ID, "steps")  # the page was reloaded
        steps.clear()
        steps.send_keys("3000")
        driver.find_element(By.ID, "train-btn").click()
        wait.until(lambda d: d.find_element(By.ID, "busy").text.startswith("busy: round 1 is training"))
        wait.until(lambda d: "step" in d.find_element(By.ID, "queue").text)  # the queue shows what runs
        shot(driver, "4-training")
        driver.find_element(By.ID, "cancel-btn").click()
        wait.until(lambda d: state(d, "status") == "cancelled")
        wait.until(lambda d: d.find_element(By.ID, "busy").text == "")

        # subject: upload, train, then draw it in the chosen round's style
        driver.find_element(By.ID, "subject-files").send_keys(str(ref))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#subject-refs img")) == 1)
        driver.find_element(By.ID, "subject-class").send_keys("fish")
        subject_steps = driver.find_element(By.ID, "subject-steps")
        subject_steps.clear()
        subject_steps.send_keys("3")
        driver.find_element(By.ID, "subject-train-btn").click()
        wait.until(lambda d: state(d, "subject-status") == "done")
        driver.find_element(By.ID, "use-subject").click()
        prompt = driver.find_element(By.ID, "prompt")
        prompt.clear()
        prompt.send_keys("a [v] fish")
        driver.find_element(By.ID, "generate-btn").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "input.pick")) == 5 + 8 or d.find_element(
            By.ID, "err-generate").text)  # the image count is back to its default 8 after the reload
        assert driver.find_element(By.ID, "err-generate").text == ""
        assert "+ subject" in driver.find_elements(By.CSS_SELECTOR, ".batch h3")[0].text  # newest batch first
        rounds = driver.find_elements(By.CSS_SELECTOR, "details.round")
        assert [r.get_attribute("data-round") for r in rounds] == ["2", "1"]  # newest round first, open
        assert rounds[0].get_attribute("open") is not None and rounds[1].get_attribute("open") is None
        shot(driver, "5-subject")
    finally:
        driver.quit()
    meta = load_tensors(tmp_path / "check.safetensors")[1]
    assert meta["train"]["round"] == 2 and meta["train"]["images"] == 3
