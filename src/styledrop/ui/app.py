"""``styledrop ui``: a small FastAPI app serving one page (page.html) over the Studio workflow.

The page polls ``/api/status`` for training progress. Errors come back as JSON ``{"error": ...}``
with status 400 (bad input) or 409 (busy), and the page shows the message.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, File, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import BaseModel

from ..io import UserError
from ..muse.sampler import DEFAULT_LAMBDA_A, DEFAULT_LAMBDA_B
from .studio import Busy, Studio

PAGE = Path(__file__).with_name("page.html")


class TrainRequest(BaseModel):
    descriptor: str
    content: str = ""
    steps: int = 200


class Round2Request(BaseModel):
    ids: list[int]
    steps: int = 200


class GenerateRequest(BaseModel):
    prompt: str
    n: int = 8
    seed: int = 0
    lambda_a: float = DEFAULT_LAMBDA_A
    lambda_b: float = DEFAULT_LAMBDA_B


def create_app(studio: Studio) -> FastAPI:
    app = FastAPI(title="styledrop", docs_url=None, redoc_url=None)

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError):
        return JSONResponse({"error": str(exc)}, status_code=409 if isinstance(exc, Busy) else 400)

    @app.get("/", response_class=HTMLResponse)
    def page():
        return PAGE.read_text()

    # sync handlers run in FastAPI's thread pool, so a long generation never blocks status polling
    @app.post("/api/references")
    def upload(files: list[UploadFile] = File(...)):
        notes = studio.add_references([(f.filename or "upload", f.file.read()) for f in files])
        return {"references": len(studio.references), "notes": notes}

    @app.delete("/api/references")
    def clear():
        studio.clear_references()
        return {"references": 0}

    @app.get("/api/references/{index}.png")
    def reference(index: int):
        return _file(studio.dir / "references" / f"{index}.png")

    @app.post("/api/train", status_code=202)
    def train(req: TrainRequest):
        return {"job": studio.start_training(req.descriptor, req.content, req.steps).__dict__}

    @app.post("/api/round2", status_code=202)
    def round2(req: Round2Request):
        return {"job": studio.start_training(studio.descriptor, studio.content, req.steps, chosen=req.ids).__dict__}

    @app.get("/api/status")
    def status():
        return studio.status()

    @app.post("/api/generate")
    def generate(req: GenerateRequest):
        rows = studio.generate(req.prompt, req.n, req.seed, req.lambda_a, req.lambda_b)
        return {"images": [{"id": r["id"], "prompt": r["prompt"], "url": f"/api/{r['file']}"} for r in rows]}

    @app.get("/api/images/{image_id}.png")
    def image(image_id: int):
        return _file(studio.dir / "images" / f"{image_id}.png")

    @app.get("/api/adapter")
    def adapter():
        if studio.adapter_file is None:
            raise UserError("no adapter trained yet")
        return FileResponse(studio.adapter_file, media_type="application/octet-stream",
                            filename=f"styledrop-round{studio.round}.safetensors")

    return app


def _file(path: Path):
    if not path.is_file():
        return JSONResponse({"error": f"not found: {path.name}"}, status_code=404)
    return FileResponse(path, media_type="image/png")
