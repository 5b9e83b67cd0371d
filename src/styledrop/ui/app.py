"""``styledrop ui``: a small FastAPI app serving one page (page.html) over the Studio workflow.

The page polls ``/api/status`` for training progress. Errors come back as JSON ``{"error": ...}``
with status 400 (bad input) or 409 (busy), and the page shows the message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from fastapi import FastAPI, File, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import BaseModel

from ..io import UserError
from ..muse.sampler import DEFAULT_LAMBDA_A, DEFAULT_LAMBDA_B
from .studio import Busy, Studio

PAGE = Path(__file__).with_name("page.html")
Kind = Literal["references", "subject"]


class TrainRequest(BaseModel):
    descriptor: str
    content: str = ""
    steps: int = 200


class Round2Request(BaseModel):
    ids: list[int]
    steps: int = 200


class SubjectRequest(BaseModel):
    token: str = "[v]"
    class_noun: str
    steps: int = 200


class GenerateRequest(BaseModel):
    prompt: str
    n: int = 8
    seed: int = 0
    lambda_a: float = DEFAULT_LAMBDA_A
    lambda_b: float = DEFAULT_LAMBDA_B
    style_round: int | None = None  # default: the latest round
    subject: bool = False  # two-theta with the subject adapter
    gamma: float = 0.5


def create_app(studio: Studio) -> FastAPI:
    app = FastAPI(title="styledrop", docs_url=None, redoc_url=None)

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError):
        return JSONResponse({"error": str(exc)}, status_code=409 if isinstance(exc, Busy) else 400)

    @app.get("/", response_class=HTMLResponse)
    def page():
        return PAGE.read_text()

    # sync handlers run in FastAPI's thread pool, so a long generation never blocks status polling
    # kind: "references" (style) or "subject" (the subject adapter's images)
    @app.post("/api/uploads/{kind}")
    def upload(kind: Kind, files: list[UploadFile] = File(...)):
        notes = studio.add_references([(f.filename or "upload", f.file.read()) for f in files], kind)
        return {"count": len(studio.references if kind == "references" else studio.subject_images), "notes": notes}

    @app.delete("/api/uploads/{kind}")
    def clear(kind: Kind):
        studio.clear_references(kind)
        return {"count": 0}

    @app.get("/api/uploads/{kind}/{index}.png")
    def reference(kind: Kind, index: int):
        return _file(studio.dir / kind / f"{index}.png")

    @app.post("/api/train", status_code=202)
    def train(req: TrainRequest):
        return {"job": studio.start_training(req.descriptor, req.content, req.steps).__dict__}

    @app.post("/api/round2", status_code=202)
    def round2(req: Round2Request):
        return {"job": studio.start_training(studio.descriptor, studio.content, req.steps, chosen=req.ids).__dict__}

    @app.post("/api/train-subject", status_code=202)
    def train_subject(req: SubjectRequest):
        return {"job": studio.start_subject_training(req.token, req.class_noun, req.steps).__dict__}

    @app.get("/api/status")
    def status():
        return studio.status()

    @app.post("/api/generate")
    def generate(req: GenerateRequest):
        rows = studio.generate(req.prompt, req.n, req.seed, req.lambda_a, req.lambda_b,
                               style_round=req.style_round, subject=req.subject, gamma=req.gamma)
        return {"images": [{"id": r["id"], "prompt": r["prompt"], "url": f"/api/{r['file']}"} for r in rows]}

    @app.get("/api/images/{image_id}.png")
    def image(image_id: int):
        return _file(studio.dir / "images" / f"{image_id}.png")

    @app.get("/api/adapter")
    def adapter(which: str = "style"):
        if which == "subject":
            path, name = studio.dir / "adapter-subject.safetensors", "styledrop-subject.safetensors"
            if studio.subject is None:
                raise UserError("no subject adapter trained yet")
        else:
            if studio.adapter_file is None:
                raise UserError("no adapter trained yet")
            path, name = studio.adapter_file, f"styledrop-round{studio.round}.safetensors"
        return FileResponse(path, media_type="application/octet-stream", filename=name)

    return app


def _file(path: Path):
    if not path.is_file():
        return JSONResponse({"error": f"not found: {path.name}"}, status_code=404)
    return FileResponse(path, media_type="image/png")
