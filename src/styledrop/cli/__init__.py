"""The ``styledrop`` command line. Thin: parses, validates, calls library code, prints."""

from __future__ import annotations

import sys

from rich.markup import escape

from ..io import UserError
from . import adapter_cmds, base_cmds, feedback_cmds, report_cmds, ui_cmds, world_cmds  # noqa: F401  (registers the commands)
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
    try:
        app(args=argv, prog_name="styledrop")
    except UserError as e:
        err.print(f"[bold red]error:[/] {escape(str(e))}", markup=True, highlight=False)
        sys.exit(2)
