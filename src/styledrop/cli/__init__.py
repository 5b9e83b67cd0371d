"""The ``styledrop`` command line. Thin: parses, validates, calls library code, prints."""

from __future__ import annotations

import sys

from rich.markup import escape

from ..io import UserError
from . import (  # noqa: F401  (registers the commands)
    adapter_cmds,
    base_cmds,
    encoder_cmds,
    feedback_cmds,
    report_cmds,
    restyle_cmds,
    ui_cmds,
    world_cmds,
)
from .common import app, err


def main(argv: list[str] | None = None) -> None:
    """Entry point. Process-wide settings live here, never at import time."""
    import diffusers
    import torch
    import transformers
    torch.set_num_threads(min(torch.get_num_threads(), 8))
    for lib in (diffusers, transformers):  # their load-time chatter is not for our users
        lib.utils.logging.set_verbosity_error()
        lib.utils.logging.disable_progress_bar()
    code = 0
    try:
        app(args=argv, prog_name="styledrop")
    except UserError as e:
        err.print(f"[bold red]error:[/] {escape(str(e))}", markup=True, highlight=False)
        code = 2
        sys.exit(2)
    except SystemExit as e:
        code = e.code
        raise
    finally:
        _leave_process_group(ok=code in (0, None))


def _leave_process_group(ok: bool) -> None:
    """Under `accelerate launch`, leave the process group before exiting: a gloo group torn down by the
    interpreter's exit aborts the process now and then ("terminate called without an active exception").
    The barrier keeps one process from leaving while another still talks to it; skipped after an error,
    where the others may never arrive."""
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        return
    if ok:
        dist.barrier()
    dist.destroy_process_group()
