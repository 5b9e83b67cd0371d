"""``styledrop ui``: the whole StyleDrop workflow in a browser."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .base_cmds import BASE_HELP, DEVICE_HELP, DTYPE_HELP, SCORER_HELP, load_base
from .common import app, err, fail


@app.command()
def ui(
    host: str = typer.Option("127.0.0.1", help="Address to bind; the default is reachable from this machine only."),
    port: int = typer.Option(7860, help="Port."),
    workdir: Path = typer.Option(Path("runs/ui"), help="Folder of the studio's runs (runs/<start time>/: uploads, "
                                 "pictures, adapters, state.json); the last one is continued."),
    adapter: Optional[str] = typer.Option(None, help="Adapter kind to train: bottleneck | shared | lora | token "
                                          "(default: the base's; bottleneck on the tiny base, LoRA on aMUSEd)."),
    scorer: Optional[Path] = typer.Option(None, help=SCORER_HELP + " The studio shows each picture's CLIP-T and "
                                          "can tick the best of each batch."),
    base: Optional[Path] = typer.Option(None, help=BASE_HELP),
    device: Optional[str] = typer.Option(None, help=DEVICE_HELP),
    dtype: Optional[str] = typer.Option(None, help=DTYPE_HELP),
):
    """Web app: upload references, train with a live progress bar, generate, tick good images, round 2, download.

    Example: styledrop ui --port 7860"""
    import uvicorn

    from ..ui.app import create_app
    from ..ui.studio import Studio
    if adapter is not None and adapter not in ("bottleneck", "shared", "lora", "token"):
        fail(f"unknown adapter kind {adapter!r}; expected bottleneck, shared, lora or token")
    if not 0 < port < 65536:
        fail(f"port must be in 1..65535, got {port}")
    from ..scorer import resolve
    model = load_base(base, device, dtype)
    from ..defaults import describe
    studio = Studio(model, workdir, adapter, scorer=resolve(model, scorer), log=err.print)
    err.print(f"settings: {describe(studio.defaults, studio.sources)}")
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"warning: binding {host}: anyone who can reach this machine can use the UI")
    err.print(f"styledrop ui on http://{host}:{port} (run {studio.dir}; earlier runs are listed on the page)")
    # on Ctrl-C or TERM the app's shutdown marks a training it cuts off as interrupted (create_app)
    uvicorn.run(create_app(studio, host), host=host, port=port, log_level="warning")
