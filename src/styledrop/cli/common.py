"""Shared pieces of the command line: the app, error exit, progress bar, output writing."""

from __future__ import annotations

import io as _io
import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="StyleDrop: teach a masked text-to-image transformer any style from one image.")
oracle_app = typer.Typer(no_args_is_help=True, help="Toy-world oracles: classifiers for content and style.")
app.add_typer(oracle_app, name="oracle")
evaluate_app = typer.Typer(no_args_is_help=True, help="Measure models and adapters with the oracles and CLIP.")
app.add_typer(evaluate_app, name="evaluate")
err = Console(stderr=True, soft_wrap=True, markup=False)  # prompts like "a [v] fish" are text, not markup


def fail(message: str) -> None:
    """One clear line on stderr and exit code 2: the contract for every bad input."""
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False)
    raise typer.Exit(2)


def read_prompts(prompt: list[str] | None, prompts_file: Path | None) -> list[str]:
    """The --prompt values, then the lines of --prompts FILE; one clear error for none, a missing file, or a blank."""
    out = list(prompt or [])
    if prompts_file is not None:
        if not prompts_file.is_file():
            fail(f"prompts file not found: {prompts_file}")
        out += [line.strip() for line in prompts_file.read_text().splitlines() if line.strip()]
    if not out:
        fail("no prompt: give --prompt (repeatable) or --prompts FILE")
    if any(not p.strip() for p in out):
        fail("empty prompt: give some text, e.g. --prompt 'a boat'")
    return out


def content_prompts(prompts_file: Path | None, count_option: str) -> list[str] | None:
    """The lines of a ``--prompts FILE`` of content prompts, or None without one. A bare number is refused,
    naming ``count_option`` (where the count of prompts goes: ``--prompts`` was once that count)."""
    if prompts_file is None:
        return None
    if not prompts_file.exists() and str(prompts_file).isdigit():
        fail(f"--prompts takes a file of content prompts, one per line; the number of prompts is "
             f"{count_option} {prompts_file}")
    return read_prompts(None, prompts_file)


def progress_bar():
    """A live bar on a terminal; in a log (CI, nohup) a plain line every 30 seconds instead."""
    if err.is_terminal:
        return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=err)
    return LogProgress()


class LogProgress:
    """The part of rich's Progress API we use, printing sparse lines to stderr."""

    def __init__(self, every: float = 30.0):
        self.tasks, self.every, self.last = {}, every, 0.0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for t in self.tasks.values():
            self._print(t)

    def add_task(self, description, total=None, **fields):
        tid = len(self.tasks)
        self.tasks[tid] = {"description": description, "total": total, "completed": 0, "info": "", "start": time.time()}
        return tid

    def update(self, tid, completed=None, advance=0, info=None, **_):
        t = self.tasks[tid]
        t["completed"] = completed if completed is not None else t["completed"] + advance
        if info is not None:
            t["info"] = info
        if time.time() - self.last >= self.every:
            self._print(t)

    def advance(self, tid, advance=1):
        self.update(tid, advance=advance)

    def _print(self, t):
        self.last = time.time()
        err.print(f"{t['description']} {t['completed']}/{t['total']} {t['info']} "
                  f"[{time.time() - t['start']:.0f}s]", highlight=False)


def png_bytes(image) -> bytes:
    from PIL import Image
    buf = _io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buf, format="PNG")
    return buf.getvalue()


def jsonl(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


ORACLE_HELP = ("Which oracles: shipped (the default), space (the space-aware second judge, which may answer "
               "'space' for a look that is no named style) or a .safetensors file.")


def load_oracles(name: str):
    from .. import oracle
    path = oracle.oracle_path(name)
    if not path.is_file():
        fail(f"no oracles at {path}: give shipped, space or an oracle file")
    return oracle.Oracles.load(path)
