"""A studio run on disk: one folder under ``<workdir>/runs/`` with its pictures, adapters and ``state.json``.

The state is written atomically after every change and read back when the studio starts, so a restart or a
crash loses nothing that was finished. Every file gets a new name from the run's counters (a cleared reference's
number is never used again), so nothing once written is overwritten.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..io import UserError, read_json, write_json

FORMAT = "styledrop-studio-run"
VERSION = 1
STATE = "state.json"
FOLDERS = ("references", "subject", "images", "restyle", "adapters")


def runs_dir(workdir: Path) -> Path:
    return Path(workdir) / "runs"


def empty_state(run_id: str, base_id: str, settings: dict) -> dict:
    return {"format": FORMAT, "version": VERSION, "id": run_id, "created": time.time(), "base_id": base_id,
            "settings": settings, "references": [], "subject_images": [], "descriptor": "", "content": "",
            "round": 0, "rounds": {}, "subject": None, "images": [], "picks": [], "batches": 0, "trainings": [],
            "counters": {k: 0 for k in FOLDERS}}


def create(workdir: Path, base_id: str, settings: dict) -> tuple[Path, dict]:
    """A new run folder named by its start time (``2026-12-07-011502``, with ``-2``... if taken)."""
    stamp = time.strftime("%Y-%m-%d-%H%M%S")
    parent = runs_dir(workdir)
    parent.mkdir(parents=True, exist_ok=True)
    name, k = stamp, 1
    while True:
        try:
            (parent / name).mkdir()
            break
        except FileExistsError:
            k += 1
            name = f"{stamp}-{k}"
    state = empty_state(name, base_id, settings)
    save(parent / name, state)
    return parent / name, state


def load(folder: Path) -> dict:
    """A run's state; a missing or corrupt one is refused, naming the file."""
    path = Path(folder) / STATE
    try:
        state = read_json(path)
    except (OSError, ValueError, UserError) as e:
        raise UserError(f"cannot read studio run {path}: {e}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path} is not a styledrop studio run (no '{FORMAT}' format)")
    if state.get("version") != VERSION:
        raise UserError(f"{path} is a studio run of version {state.get('version')}; this styledrop reads {VERSION}")
    return state


def save(folder: Path, state: dict) -> None:
    write_json(Path(folder) / STATE, state)


def new_file(state: dict, folder: str, suffix: str = ".png", stem: str = "") -> str:
    """A path relative to the run, never used before in it: ``images/7.png``, ``adapters/3-round2.safetensors``."""
    number = state["counters"][folder]
    state["counters"][folder] += 1
    return f"{folder}/{number}{stem}{suffix}"


def listing(workdir: Path) -> list[dict]:
    """Every readable run under ``workdir``, newest first, as the page lists them."""
    out = []
    for folder in sorted(runs_dir(workdir).glob("*/"), reverse=True):
        try:
            s = load(folder)
        except UserError:
            continue
        out.append({"id": s["id"], "created": s["created"], "updated": (folder / STATE).stat().st_mtime,
                    "descriptor": s["descriptor"],
                    "rounds": sorted(int(r) for r in s["rounds"]), "images": len(s["images"]),
                    "references": len(s["references"])})
    return sorted(out, key=lambda r: r["created"], reverse=True)
