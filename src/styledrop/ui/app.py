"""``styledrop ui``: a small FastAPI app serving one page (page.html) over the Studio workflow.

The page polls ``/api/status`` for the queue and training progress and restores itself from ``/api/state``.
Errors come back as JSON ``{"error": ...}`` with status 400 (bad input), 403 (another site), 413 (too large) or
429 (the queue is full), and the page shows the message beside the control that caused it.

Closed to other sites: only the Host names the server was started for are served (DNS rebinding), and a
request that changes state needs a same-origin ``Origin``/``Referer`` or the per-server token the page carries
in the ``X-Styledrop-Token`` header (cross-site request forgery).
"""

from __future__ import annotations

import math
import secrets
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from ..io import UserError
from ..muse.text import short
from .jobs import QueueFull
from .studio import MAX_IMAGES_PER_CALL, MAX_REFERENCES, Studio

PAGE = Path(__file__).with_name("page.html")
Kind = Literal["references", "subject"]
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
MAX_UPLOAD_BYTES = 32 * 2**20  # one upload request's body
MAX_JSON_BYTES = 64 * 2**10  # any other request's body
# No page may frame the studio (clickjacking: clicks inside a frame carry the page's own token), and the page runs
# only its own script and style files, none inline.
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
                               "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
STATIC = {"page.js": "text/javascript", "page.css": "text/css"}
MAX_PROMPT = 300  # characters
TOKEN_HEADER = "x-styledrop-token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class TrainRequest(BaseModel):
    descriptor: str = Field(max_length=MAX_PROMPT)
    content: str = Field("", max_length=MAX_PROMPT)
    steps: int = Field(200, ge=1, le=5000)


class Round2Request(BaseModel):
    ids: list[int] = Field(max_length=256)
    steps: int = Field(200, ge=1, le=5000)


class SubjectRequest(BaseModel):
    token: str = Field("[v]", max_length=40)
    class_noun: str = Field(max_length=40)
    steps: int = Field(200, ge=1, le=5000)


class GenerateRequest(BaseModel):
    prompt: str = Field(max_length=MAX_PROMPT)
    n: int = Field(8, ge=1, le=MAX_IMAGES_PER_CALL)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    lambda_a: float | None = Field(None, ge=0, le=10, allow_inf_nan=False)  # default: the base's
    lambda_b: float | None = Field(None, ge=0, le=10, allow_inf_nan=False)
    style_round: int | None = None  # default: the latest round
    subject: bool = False  # two-theta with the subject adapter
    gamma: float = Field(0.5, ge=0, le=1, allow_inf_nan=False)


class PicksRequest(BaseModel):
    ids: list[int] = Field(max_length=4096)


class JobRequest(BaseModel):
    id: int


class CancelRequest(BaseModel):
    id: int | None = None  # default: the running training, else the last waiting one


class RunRequest(BaseModel):
    id: str = Field(max_length=80)


def _hostname(netloc: str) -> str:
    """'127.0.0.1:7860' -> '127.0.0.1', '[::1]:7860' -> '::1'."""
    return (urlsplit(f"//{netloc}").hostname or "").lower()


def _field_error(exc: RequestValidationError) -> str:
    """Pydantic's errors in words: the field, what is allowed, what was received."""
    parts = []
    for e in exc.errors():
        field = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path"))
        got = e.get("input")
        got = f"{got!r}"[:60] if not (isinstance(got, float) and not math.isfinite(got)) else str(got)
        parts.append(f"{field or 'request'}: {e.get('msg', 'invalid')}, got {got}")
    return "; ".join(parts)


class BodyLimit:
    """Refuses a request body over its cap before the app reads it: ``upload`` bytes for a multipart upload,
    ``json`` bytes for anything else. By its Content-Length, or, when it has none, by reading the streamed body
    up to the cap first (then handed on as it came)."""

    def __init__(self, app, upload: int, json: int):
        self.app, self.upload, self.json = app, upload, json

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        multipart = headers.get(b"content-type", b"").lower().startswith(b"multipart/form-data")
        limit = self.upload if multipart else self.json
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > limit:
                return await self._refuse(scope, receive, send, limit)
            return await self.app(scope, receive, send)
        messages, seen = [], 0
        while True:
            message = await receive()
            messages.append(message)
            seen += len(message.get("body", b""))
            if seen > limit:
                return await self._refuse(scope, receive, send, limit)
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay():
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send, limit):
        what = "upload" if limit == self.upload else "JSON body"
        size = f"{limit // 2**20} MB" if limit >= 2**20 else f"{limit // 2**10} KB"
        hint = ": upload fewer or smaller pictures" if limit == self.upload else ""
        await JSONResponse({"error": f"{what} over {size}{hint}"}, status_code=413,
                           headers=SECURITY_HEADERS)(scope, receive, send)


def create_app(studio: Studio, host: str = "127.0.0.1", token: str | None = None) -> FastAPI:
    """``host``: the address given to ``styledrop ui --host``; its name is served besides the local ones."""
    @asynccontextmanager
    async def lifespan(app):
        yield
        studio.shutdown()  # Ctrl-C or TERM: a training cut off is marked interrupted, with its last step

    app = FastAPI(title="styledrop", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    allowed = {h.lower() for h in LOCAL_HOSTS} | {host.lower().strip("[]")}
    app.state.token = token = token or secrets.token_urlsafe(24)

    @app.middleware("http")
    async def same_site_only(request: Request, call_next):
        name = _hostname(request.headers.get("host", ""))
        if name not in allowed:
            response = JSONResponse({"error": f"this server answers to {', '.join(sorted(allowed))}, not "
                                              f"{name or 'a request without Host'}"}, status_code=400)
        elif request.method not in SAFE_METHODS and not secrets.compare_digest(
                request.headers.get(TOKEN_HEADER, ""), token) and not _same_origin(request):
            response = JSONResponse({"error": "refused: a change must come from this page (same-origin Origin or "
                                              f"Referer, or the {TOKEN_HEADER} header)"}, status_code=403)
        else:
            response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    app.add_middleware(BodyLimit, upload=MAX_UPLOAD_BYTES, json=MAX_JSON_BYTES)

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError):
        return JSONResponse({"error": str(exc)}, status_code=429 if isinstance(exc, QueueFull) else 400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def bad_field(request: Request, exc: RequestValidationError):
        return JSONResponse({"error": _field_error(exc)}, status_code=400)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):  # JSON the page can show, never a plain-text 500
        return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)

    @app.get("/", response_class=HTMLResponse)
    def page():
        d = studio.defaults  # the base's: the page's sliders and step boxes start there
        return (PAGE.read_text().replace("{{TOKEN}}", token).replace("__LAMBDA_A__", str(d["lambda_a"]))
                .replace("__LAMBDA_B__", str(d["lambda_b"])).replace("__TRAIN_STEPS__", str(d["train_steps"])))

    @app.get("/static/{name}")
    def static(name: str):
        if name not in STATIC:
            return JSONResponse({"error": f"not found: {short(name, 40)}"}, status_code=404)
        return FileResponse(PAGE.with_name(name), media_type=STATIC[name])

    # sync handlers run in FastAPI's thread pool, so a generation waiting in the queue never blocks status polling
    # kind: "references" (style) or "subject" (the subject adapter's images)
    @app.post("/api/uploads/{kind}")
    def upload(kind: Kind, files: list[UploadFile] = File(...)):
        if len(files) > MAX_REFERENCES:  # counted before any file is read or decoded
            raise UserError(f"{len(files)} files in one upload; at most {MAX_REFERENCES}")
        notes = studio.add_references([(f.filename or "upload", f.file.read()) for f in files], kind)
        return {"count": len(studio.status()["references" if kind == "references" else "subject_images"]),
                "notes": notes}

    @app.delete("/api/uploads/{kind}")
    def clear(kind: Kind):
        studio.clear_references(kind)
        return {"count": 0}

    @app.post("/api/train", status_code=202)
    def train(req: TrainRequest):
        return {"job": studio.start_training(req.descriptor, req.content, req.steps).public()}

    @app.post("/api/round2", status_code=202)
    def round2(req: Round2Request):
        s = studio.status()
        return {"job": studio.start_training(s["descriptor"], s["content"], req.steps, chosen=req.ids).public()}

    @app.post("/api/train-subject", status_code=202)
    def train_subject(req: SubjectRequest):
        return {"job": studio.start_subject_training(req.token, req.class_noun, req.steps).public()}

    @app.post("/api/restart", status_code=202)
    def restart(req: JobRequest):
        return {"job": studio.restart(req.id).public()}

    @app.post("/api/cancel")
    def cancel(req: CancelRequest | None = None):
        return {"job": studio.cancel(req.id if req else None)}

    @app.get("/api/status")
    def status():
        return studio.status()

    @app.get("/api/state")
    def state():
        return studio.state_view()

    @app.post("/api/runs")
    def new_run():
        return studio.new_run()

    @app.post("/api/runs/open")
    def open_run(req: RunRequest):
        return studio.open_run(req.id)

    @app.post("/api/picks")
    def picks(req: PicksRequest):
        return {"picks": studio.set_picks(req.ids)}

    @app.post("/api/picks/clip")
    def picks_by_clip():
        return {"picks": studio.pick_by_clip()}

    @app.post("/api/generate")
    def generate(req: GenerateRequest):
        rows = studio.generate(req.prompt, req.n, req.seed, req.lambda_a, req.lambda_b,
                               style_round=req.style_round, subject=req.subject, gamma=req.gamma)
        return {"images": [studio.public_image(r) for r in rows]}

    @app.post("/api/restyle")
    def restyle(file: UploadFile = File(...), strength: float = Form(0.6), n: int = Form(4, ge=1, le=64),
                seed: int = Form(0, ge=0, le=2**32 - 1), prompt: str = Form("", max_length=MAX_PROMPT),
                style_round: int | None = Form(None)):
        source, rows = studio.restyle(file.filename or "upload", file.file.read(), strength, n, seed, prompt,
                                      style_round)
        return {"input": source, "images": [studio.public_image(r) for r in rows]}

    @app.get("/api/files/{folder}/{name}")
    def picture(folder: str, name: str):
        path = studio.file(f"{folder}/{name}")
        if path is None:
            return JSONResponse({"error": f"not found: {short(folder, 20)}/{short(name, 40)}"}, status_code=404)
        return FileResponse(path, media_type="image/png")

    @app.get("/api/adapter")
    def adapter(which: str = "style", round: int | None = None):
        path, name = studio.adapter_file(which, round)
        return FileResponse(path, media_type="application/octet-stream", filename=name)

    return app


def _same_origin(request: Request) -> bool:
    source = request.headers.get("origin") or request.headers.get("referer") or ""
    return bool(source) and urlsplit(source).netloc.lower() == request.headers.get("host", "").lower()
