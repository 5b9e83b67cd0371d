"""The web studio is closed to other sites, bounded under load, and says what is wrong in words."""

import concurrent.futures as cf
import io
import json
import resource
import socket
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from styledrop import adapters, world
from styledrop.ui.app import MAX_UPLOAD_BYTES, create_app
from styledrop.ui.studio import Studio

from .tiny import tiny_base

ORIGIN = "http://127.0.0.1:7860"
ENDPOINTS = [("GET", "/"), ("GET", "/api/status"), ("GET", "/api/state"), ("GET", "/api/adapter"),
             ("GET", "/api/files/images/0.png"), ("GET", "/api/files/references/0.png"), ("GET", "/static/page.js"),
             ("POST", "/api/uploads/references"), ("DELETE", "/api/uploads/references"), ("POST", "/api/train"),
             ("POST", "/api/round2"), ("POST", "/api/train-subject"), ("POST", "/api/generate"),
             ("POST", "/api/cancel"), ("POST", "/api/picks"), ("POST", "/api/restart"), ("POST", "/api/runs"),
             ("POST", "/api/runs/open")]
CHANGES = [(m, p) for m, p in ENDPOINTS if m != "GET"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_base(tmp_path_factory.mktemp("tiny"))


def _png(size=64) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(world.render("fish", "pop_art", np.random.default_rng(0))).resize((size, size)).save(buf, "PNG")
    return buf.getvalue()


def _client(studio, **kw):
    return TestClient(create_app(studio, **kw), base_url=ORIGIN, headers={"Origin": ORIGIN})


def _wait(client, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        s = client.get("/api/status").json()
        if not s["running"] and not s["queue"]:
            return s["job"]
        time.sleep(0.05)
    raise AssertionError("the queue did not empty")


def test_foreign_hosts_and_origins_are_refused_everywhere(base, tmp_path):
    studio = Studio(base, tmp_path / "ui")
    app = create_app(studio, host="192.168.1.20", token="secret")
    for method, path in ENDPOINTS:  # DNS rebinding: a page on evil.example resolving to 127.0.0.1
        r = TestClient(app, base_url="http://evil.example:7860").request(method, path)
        assert r.status_code == 400 and "evil.example" in r.json()["error"], (method, path)
    for method, path in CHANGES:  # cross-site request forgery: another site's page posting here
        client = TestClient(app, base_url=ORIGIN)
        assert client.request(method, path, headers={"Origin": "http://evil.example"}).status_code == 403
        assert client.request(method, path, headers={"Referer": "http://evil.example/x"}).status_code == 403
        assert client.request(method, path).status_code == 403, (method, path)  # neither Origin nor token
        assert client.request(method, path, headers={"X-Styledrop-Token": "wrong"}).status_code == 403
    ok = TestClient(app, base_url=ORIGIN)
    assert ok.get("/api/status").status_code == 200
    assert ok.delete("/api/uploads/references", headers={"Origin": ORIGIN}).status_code == 200
    assert ok.delete("/api/uploads/references", headers={"Referer": ORIGIN + "/"}).status_code == 200
    assert ok.delete("/api/uploads/references", headers={"X-Styledrop-Token": "secret"}).status_code == 200
    for host in ("localhost:7860", "[::1]:7860", "192.168.1.20:7860"):  # the names it was started for
        assert TestClient(app, base_url=f"http://{host}").get("/api/status").status_code == 200
    assert 'content="secret"' in ok.get("/").text  # the page carries the token


def test_bounds_and_errors_in_words(base, tmp_path):
    studio = Studio(base, tmp_path / "ui")
    client = _client(studio)
    big = io.BytesIO()
    Image.new("RGB", (5000, 5000)).save(big, "PNG")  # small file, many pixels
    r = client.post("/api/uploads/references", files=[("files", ("huge.png", big.getvalue(), "image/png"))])
    assert r.status_code == 400 and "5000x5000" in r.json()["error"] and "4096x4096" in r.json()["error"]
    r = client.post("/api/uploads/references", files=[("files", (f"{i}.png", _png(), "image/png")) for i in range(17)])
    assert r.status_code == 400 and "at most 16" in r.json()["error"] and studio.status()["references"] == []
    r = client.post("/api/uploads/references", content=b"x" * 10,
                    headers={"Content-Length": str(MAX_UPLOAD_BYTES + 1), "Content-Type": "multipart/form-data"})
    assert r.status_code == 413 and "MB" in r.json()["error"]
    r = client.post("/api/uploads/references", files=[("files", ("notes.txt", b"hello", "text/plain"))])
    assert r.status_code == 400 and "notes.txt" in r.json()["error"] and "BytesIO" not in r.json()["error"]
    r = client.post("/api/uploads/references", files=[("files", ("ref.png", _png(100), "image/png"))])
    assert r.status_code == 200 and any("resized 100x100" in n for n in r.json()["notes"])
    for field, value, words in [("lambda_a", float("nan"), "lambda_a"), ("lambda_b", float("inf"), "lambda_b"),
                                ("lambda_a", 1e308, "less than or equal to 10"), ("seed", 2**70, "seed"),
                                ("gamma", -1, "gamma"), ("prompt", "x" * 21000, "at most 300 characters")]:
        body = json.dumps({"prompt": "a boat", field: value})
        r = client.post("/api/generate", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and words in r.json()["error"], (field, r.text[:200])
        assert len(r.json()["error"]) < 300  # the value is cut, not echoed whole
    r = client.post("/api/train", json={"descriptor": "in pop art style", "steps": 2.5})
    assert r.status_code == 400 and r.json()["error"].startswith("steps:")

    # JSON bodies are capped at 64 KB, with or without a Content-Length; uploads at 32 MB, also when streamed
    r = client.post("/api/picks", content=json.dumps({"ids": [1] * 40000}),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "JSON body over 64 KB" in r.json()["error"]
    chunks = (b"x" * 2**14 for _ in range(8))  # a generator: sent chunked, with no Content-Length
    r = client.post("/api/picks", content=chunks, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "64 KB" in r.json()["error"]
    chunks = (b"x" * 2**20 for _ in range(MAX_UPLOAD_BYTES // 2**20 + 1))
    r = client.post("/api/uploads/references", content=chunks,
                    headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413 and "upload over 32 MB" in r.json()["error"]
    tiff = io.BytesIO()
    Image.new("RGB", (64, 64)).save(tiff, "TIFF")
    r = client.post("/api/uploads/references", files=[("files", ("scan.tif", tiff.getvalue(), "image/tiff"))])
    assert r.status_code == 400 and "TIFF" in r.json()["error"] and "PNG, JPEG, WebP, GIF or BMP" in r.json()["error"]
    assert len(studio.status()["references"]) == 1  # only the 100x100 PNG above


def test_state_survives_a_reload_and_training_can_be_cancelled(base, tmp_path):
    studio = Studio(base, tmp_path / "ui")
    client = _client(studio)
    client.post("/api/uploads/references", files=[("files", ("ref.png", _png(), "image/png"))])
    assert client.post("/api/train", json={"descriptor": "in pop art style", "content": "a fish",
                                           "steps": 3}).status_code == 202
    assert _wait(client)["state"] == "done"
    client.post("/api/generate", json={"prompt": "a boat", "n": 2, "seed": 5})
    client.post("/api/generate", json={"prompt": "a cat", "n": 1, "seed": 9})
    assert client.post("/api/picks", json={"ids": [1, 2]}).json()["picks"] == [1, 2]
    assert client.post("/api/picks", json={"ids": [99]}).status_code == 400
    state = client.get("/api/state").json()
    assert state["descriptor"] == "in pop art style" and state["content"] == "a fish" and state["picks"] == [1, 2]
    assert [(i["prompt"], i["round"], i["seed"], i["batch"]) for i in state["images"]] == [
        ("a boat", 1, 5, 1), ("a boat", 1, 6, 1), ("a cat", 1, 9, 2)]
    meta = adapters.load(studio.adapter_file()[0], base)[1]
    assert "base_path" not in meta and meta["base_name"] == base.path.name and str(tmp_path) not in json.dumps(meta)

    # a ticked picture gone from disk: round 2 says which, in words (it was a plain-text 500)
    (studio.dir / "images" / "2.png").unlink()
    r = client.post("/api/round2", json={"ids": [2], "steps": 2})
    assert r.status_code == 400 and "ticked picture #2 images/2.png is missing" in r.json()["error"]

    before = studio.adapter_file()[0].read_bytes()
    assert client.post("/api/train", json={"descriptor": "in lava style", "steps": 5000}).status_code == 202
    end = time.time() + 30
    while not (client.get("/api/status").json()["busy"] or "").startswith("round 1 is training") and time.time() < end:
        time.sleep(0.02)
    assert client.post("/api/cancel").status_code == 200
    job = _wait(client)
    assert job["state"] == "cancelled" and job["step"] < 5000
    assert studio.adapter_file()[0].read_bytes() == before and client.get("/api/status").json()["busy"] is None
    assert client.post("/api/cancel").status_code == 400  # nothing to cancel

    # Clear deletes the files it clears; a new upload gets a new name, never an old one
    first = client.get("/api/status").json()["references"][0]
    assert client.delete("/api/uploads/references").status_code == 200
    assert not (studio.dir / "references" / "0.png").exists() and client.get(first).status_code == 404
    client.post("/api/uploads/references", files=[("files", ("again.png", _png(), "image/png"))])
    assert client.get("/api/status").json()["references"] == ["/api/files/references/1.png"]


def test_a_full_queue_refuses_in_words_and_waiting_jobs_can_be_cancelled(base, tmp_path):
    studio = Studio(base, tmp_path / "ui", queue_limit=2)
    client = _client(studio)
    client.post("/api/uploads/references", files=[("files", ("ref.png", _png(), "image/png"))])
    assert client.post("/api/train", json={"descriptor": "in pop art style", "steps": 5000}).status_code == 202
    end = time.time() + 30
    while not client.get("/api/status").json()["running"] and time.time() < end:
        time.sleep(0.02)
    for _ in range(2):  # the first runs, two wait
        assert client.post("/api/train", json={"descriptor": "in pop art style", "steps": 5000}).status_code == 202
    r = client.post("/api/train", json={"descriptor": "in pop art style", "steps": 5000})
    assert r.status_code == 429 and "queue full" in r.json()["error"] and "at most 2" in r.json()["error"]
    s = client.get("/api/status").json()
    assert [q["position"] for q in s["queue"]] == [1, 2]
    for q in s["queue"]:
        assert client.post("/api/cancel", json={"id": q["id"]}).json()["job"]["state"] == "cancelled"
    client.post("/api/cancel")
    assert _wait(client)["state"] == "cancelled"
    assert [t["state"] for t in client.get("/api/status").json()["trainings"]][-2:] == ["cancelled", "cancelled"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_fifty_concurrent_mixed_requests_on_loopback(base, tmp_path):
    import httpx
    import uvicorn
    port = _free_port()
    workdir = tmp_path / "ui"
    server = uvicorn.Server(uvicorn.Config(create_app(Studio(base, workdir)), host="127.0.0.1", port=port,
                                           log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    headers = {"Origin": url}
    while not server.started:
        time.sleep(0.05)
    png, big = _png(), io.BytesIO()
    Image.new("RGB", (3000, 3000)).save(big, "PNG")

    def request(k):
        with httpx.Client(base_url=url, headers=headers, timeout=120) as c:
            kind = k % 5
            if kind == 0:
                return c.post("/api/uploads/references", files=[("files", (f"{k}.png", png, "image/png"))])
            if kind == 1:
                return c.post("/api/uploads/references", files=[("files", ("big.png", big.getvalue(), "image/png"))])
            if kind == 2:
                return c.get("/api/status")
            if kind == 3:
                return c.post("/api/train", json={"descriptor": "in pop art style", "steps": 20})
            return c.post("/api/generate", json={"prompt": "a boat", "n": 2})

    try:
        with cf.ThreadPoolExecutor(16) as pool:
            codes = [r.status_code for r in pool.map(request, range(50))]
        assert all(200 <= c < 500 for c in codes), codes
        assert httpx.get(url + "/api/status").status_code == 200  # still alive
        end = time.time() + 120
        while httpx.get(url + "/api/status").json()["busy"] and time.time() < end:
            time.sleep(0.1)
        assert not [p for p in workdir.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]  # none half-written
        for p in workdir.rglob("*.png"):
            Image.open(p).verify()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"50 mixed requests: {sorted(set(codes))}, peak RSS {rss:.0f} MB")
    finally:
        server.should_exit = True
        thread.join(10)


def test_fifty_generations_ten_at_a_time_all_arrive_while_status_stays_fast(base, tmp_path):
    import httpx
    import uvicorn
    port = _free_port()
    studio = Studio(base, tmp_path / "ui")
    server = uvicorn.Server(uvicorn.Config(create_app(studio), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    while not server.started:
        time.sleep(0.05)
    latencies, stop = [], threading.Event()

    def watch():  # a second tab polling the status the whole time
        with httpx.Client(base_url=url, timeout=30) as c:
            while not stop.is_set():
                t = time.perf_counter()
                assert c.get("/api/status").status_code == 200
                latencies.append(time.perf_counter() - t)
                time.sleep(0.02)

    def generate(k):
        with httpx.Client(base_url=url, headers={"Origin": url}, timeout=300) as c:
            return c.post("/api/generate", json={"prompt": f"a boat {k}", "n": 1, "seed": k})

    try:
        with httpx.Client(base_url=url, headers={"Origin": url}, timeout=60) as c:
            c.post("/api/uploads/references", files=[("files", ("ref.png", _png(), "image/png"))])
            assert c.post("/api/train", json={"descriptor": "in pop art style", "steps": 2}).status_code == 202
        watcher = threading.Thread(target=watch)
        watcher.start()
        with cf.ThreadPoolExecutor(10) as pool:  # 10 at a time; the first ones wait behind the training
            responses = list(pool.map(generate, range(50)))
        stop.set()
        watcher.join(30)
        assert [r.status_code for r in responses] == [200] * 50, [r.text[:100] for r in responses if r.is_error]
        made = [r.json()["images"][0] for r in responses]
        assert sorted(im["seed"] for im in made) == list(range(50)) and len({im["id"] for im in made}) == 50
        assert [im["prompt"] for im in made] == [f"a boat {k}" for k in range(50)]  # each got its own pictures
        assert len(studio.state_view()["images"]) == 50  # none lost, none doubled
        s = httpx.get(url + "/api/status").json()
        assert s["running"] is None and s["queue"] == [] and s["busy"] is None
        latencies.sort()
        assert len(latencies) > 20 and latencies[len(latencies) // 2] < 0.25 and latencies[-1] < 2.0, latencies[-5:]
        print(f"status while 50 generations queued: median {latencies[len(latencies) // 2] * 1000:.0f} ms, "
              f"max {latencies[-1] * 1000:.0f} ms over {len(latencies)} polls")
    finally:
        stop.set()
        server.should_exit = True
        thread.join(10)
        studio.shutdown()
    studio.queue._worker.join(10)
    assert not studio.queue._worker.is_alive()  # nothing left running after


def test_restyle_over_http(base, tmp_path):
    studio = Studio(base, tmp_path / "ui")
    client = _client(studio)
    pic = ("file", ("cat.png", _png(90), "image/png"))
    assert "train an adapter first" in client.post("/api/restyle", files=[pic]).json()["error"]
    client.post("/api/uploads/references", files=[("files", ("ref.png", _png(), "image/png"))])
    client.post("/api/train", json={"descriptor": "in pop art style", "steps": 2})
    _wait(client)
    r = client.post("/api/restyle", files=[pic], data={"strength": "0.5", "n": "2", "seed": "3"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(i["seed"], i["strength"]) for i in body["images"]] == [(3, 0.5), (4, 0.5)]
    assert client.get(body["input"]).headers["content-type"] == "image/png" and "/restyle/" in body["input"]
    for strength in ("0", "1.5", "nan"):
        r = client.post("/api/restyle", files=[pic], data={"strength": strength})
        assert r.status_code == 400 and "strength must be in (0, 1]" in r.json()["error"], strength
    r = client.post("/api/restyle", files=[("file", ("notes.txt", b"hi", "text/plain"))])
    assert r.status_code == 400 and "notes.txt" in r.json()["error"]
    assert len(client.get("/api/state").json()["images"]) == 2  # nothing added by the refused ones


def test_cli_adapter_files_carry_no_absolute_path_and_find_their_reference(cli, base, tmp_path):
    import shutil
    ref = tmp_path / "work" / "refs" / "ref.png"
    ref.parent.mkdir(parents=True)
    ref.write_bytes(_png())
    out = tmp_path / "work" / "adapters" / "pop.safetensors"
    code, _, err = cli("train", "--image", ref.resolve(), "--style", "in pop art style", "--steps", 2, "--out", out,
                       "--base", base.path)
    assert code == 0, err
    meta = adapters.load(out, base)[1]
    text = json.dumps(meta)
    assert str(tmp_path) not in text and meta["train"]["images"] == ["../refs/ref.png"] and "base_path" not in meta
    moved = tmp_path / "elsewhere"
    shutil.move(tmp_path / "work", moved)  # the adapter and its reference travel together
    assert adapters.trained_images(meta, moved / "adapters" / "pop.safetensors")[0].exists()
