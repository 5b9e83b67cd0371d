"""Files in and out: atomic saves, safetensors with JSON metadata, image loading, pictures kept on disk.

Only safetensors and JSON are ever loaded, never pickles: a user's file cannot run code.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file


class UserError(Exception):
    """A problem with what the user gave us: the CLI prints it as one line and exits 2."""


def atomic_write(path: str | Path, write) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a saved model should be readable like any file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_tensors(path, tensors: dict[str, torch.Tensor], meta: dict | None = None) -> None:
    """Save tensors as safetensors; ``meta`` (any JSON) rides along in the header."""
    header = {"styledrop": json.dumps(meta or {})}
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))


def load_tensors(path) -> tuple[dict[str, torch.Tensor], dict]:
    """Load a safetensors file written by :func:`save_tensors`; clear errors if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    try:
        with safe_open(str(path), "pt") as f:
            header = f.metadata() or {}
        tensors = load_file(str(path))
        meta = json.loads(header.get("styledrop", "{}"))
    except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as e:
        raise UserError(f"{path} is not a valid safetensors file ({e})") from None
    return tensors, meta


def write_json(path, obj) -> None:
    text = json.dumps(obj, indent=2) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def read_json(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({e})") from None


def load_image(path, size: int = 64, fit: str = "crop") -> tuple[np.ndarray, list[str]]:
    """Read any image file as (size, size, 3) uint8 RGB; returns it with notes on what was converted."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"image not found: {path}")
    with open(path, "rb") as f:
        return decode_image(f, str(path), size, fit)


MAX_SIDE = 4096
MAX_PIXELS = MAX_SIDE * MAX_SIDE  # a 12000x12000 PNG of 446 KB would take 560 MB to decode


READABLE = {"PNG", "JPEG", "MPO", "WEBP", "GIF", "BMP"}  # MPO: a JPEG from a camera, with a second frame


FITS = ("crop", "pad")


def square(im: Image.Image, fit: str) -> tuple[Image.Image, str | None]:
    """A non-square picture made square without squashing it: its centre square (``crop``), or the whole picture
    on a square of its own edge colour (``pad``); with a note saying which."""
    w, h = im.size
    if w == h:
        return im, None
    if fit == "crop":
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        return im.crop((left, top, left + side, top + side)), f"centre-cropped {w}x{h} to {side}x{side}"
    side = max(w, h)
    edge = np.asarray(im)[[0, -1]].reshape(-1, 3) if h < w else np.asarray(im)[:, [0, -1]].reshape(-1, 3)
    out = Image.new("RGB", (side, side), tuple(int(v) for v in np.median(edge, 0)))
    out.paste(im, ((side - w) // 2, (side - h) // 2))
    return out, f"padded {w}x{h} to {side}x{side}"


def decode_image(source, label: str, size: int = 64, fit: str = "crop") -> tuple[np.ndarray, list[str]]:
    """Like :func:`load_image`, from bytes or an open binary file; ``label`` names it in errors. A non-square
    picture is centre-cropped (``fit="crop"``) or padded (``"pad"``), never squashed."""
    if fit not in FITS:
        raise UserError(f"unknown fit {fit!r}; expected one of {', '.join(FITS)}")
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    try:
        with Image.open(source) as im:
            if im.size[0] * im.size[1] > MAX_PIXELS:  # refused from the header, before decoding a single pixel
                raise UserError(f"image {label} is {im.size[0]}x{im.size[1]} pixels; at most "
                                f"{MAX_SIDE}x{MAX_SIDE} ({MAX_PIXELS / 1e6:.1f} MP) are read")
            if im.format not in READABLE:  # Pillow reads more (TIFF, ICO, PSD, ...); we promise these
                raise UserError(f"cannot read image {label}: it is a {im.format} picture; expected "
                                f"PNG, JPEG, WebP, GIF or BMP")
            im.load()
            notes = []
            if im.mode != "RGB":
                notes.append(f"converted {im.mode} to RGB")
                if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
                    im = im.convert("RGBA")
                    white = Image.new("RGBA", im.size, (255, 255, 255, 255))
                    im = Image.alpha_composite(white, im)
                im = im.convert("RGB")
            im, squared = square(im, fit)
            notes += [squared] if squared else []
            if im.size != (size, size):
                notes.append(f"resized {im.size[0]}x{im.size[1]} to {size}x{size}")
                im = im.resize((size, size), Image.Resampling.LANCZOS)
            return np.asarray(im, np.uint8).copy(), notes
    except UnidentifiedImageError:
        raise UserError(f"cannot read image {label}: it is not a picture (expected PNG, JPEG, WebP, GIF or BMP)") \
            from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise UserError(f"cannot read image {label}: {e}") from None


def save_png(path, image: np.ndarray) -> None:
    atomic_write(path, lambda tmp: Image.fromarray(image).save(tmp, format="PNG"))


class PictureFolder(Sequence):
    """Pictures kept on disk as ``NNNN.png`` and read back one at a time, so that hundreds of candidates at
    512 px never sit in memory together. PNG is lossless: a picture read back is the picture written."""

    def __init__(self, folder, count: int):
        self.folder, self.count = Path(folder), count

    def path(self, i: int) -> Path:
        return self.folder / f"{i:04d}.png"

    def write(self, i: int, image: np.ndarray) -> None:
        save_png(self.path(i), image)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.count))]
        if not -self.count <= i < self.count:
            raise IndexError(i)
        with Image.open(self.path(i % self.count)) as im:
            return np.asarray(im.convert("RGB"), np.uint8).copy()


def image_files(paths) -> list[Path]:
    """Expand files and folders (their PNGs, sorted) into a list of image paths."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(p.glob("*.png")))
        elif p.exists():
            out.append(p)
        else:
            raise UserError(f"no such file or folder: {p}")
    if not out:
        raise UserError("no images found in " + ", ".join(map(str, paths)))
    return out


def staged_dir(out, files: dict[str, bytes | object]) -> Path:
    """Write ``files`` (name -> bytes, or a callable taking a path) into ``out`` all at once.

    Everything is first written into a hidden sibling folder; only when all of it succeeded
    are the files moved into ``out``. A failure leaves ``out`` as it was.
    """
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    except OSError as e:
        raise UserError(f"cannot write to {out}: {e.strerror or e}") from None
    try:
        for name, content in files.items():
            target = stage / name
            if callable(content):
                content(target)
            else:
                target.write_bytes(content)
        out.mkdir(parents=True, exist_ok=True)
        for name in files:
            os.replace(stage / name, out / name)
    except OSError as e:
        raise UserError(f"cannot write to {out}: {e.strerror or e}") from None
    finally:
        for leftover in stage.glob("*"):
            leftover.unlink()
        stage.rmdir()
    return out


def optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Flatten an optimizer's per-parameter state into named tensors (for safetensors)."""
    out = {}
    for pid, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            out[f"opt.{pid}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return out


def load_optimizer_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    sd = opt.state_dict()
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, pid, key = name.split(".", 2)
            sd["state"].setdefault(int(pid), {})[key] = value
    opt.load_state_dict(sd)
