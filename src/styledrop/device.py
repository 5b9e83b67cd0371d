"""Where the model runs and in what precision: ``--device cpu|cuda|mps`` and ``--dtype``, auto-detected.

Auto: CUDA if present (bfloat16 where the GPU computes it natively, else float16), then Apple's MPS
(float16), else the CPU in float32 (bfloat16 autocast was measured 25-30x slower on this CPU
for our conv-heavy models). The frozen base is loaded straight into the chosen dtype, so a half
dtype on a GPU never keeps an fp32 copy of G; adapters keep fp32 weights and cast at their edges, and training
under float16 scales its loss (``torch.amp.GradScaler``) so that small gradients do not underflow.
"""

from __future__ import annotations

import torch

from .io import UserError

DEVICES = ("cpu", "cuda", "mps")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def native_bf16(device: torch.device) -> bool:
    """Whether the GPU computes bfloat16 natively (compute capability 8.0, Ampere, or later).
    ``torch.cuda.is_bf16_supported()`` also says yes where bf16 is only emulated (V100, T4): slow, so fp16 there."""
    return torch.cuda.get_device_capability(device) >= (8, 0)


def _has_mps() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def resolve(device: str | None = None, dtype: str | None = None) -> tuple[torch.device, torch.dtype]:
    """Check the user's choice against this machine; fill in what was left out."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "mps" if _has_mps() else "cpu"
    kind = device.split(":")[0]
    if kind not in DEVICES:
        raise UserError(f"unknown --device {device!r}; expected one of {', '.join(DEVICES)}")
    if kind == "cuda" and not torch.cuda.is_available():
        build = "a CPU-only build of PyTorch" if torch.version.cuda is None else "PyTorch with CUDA"
        raise UserError(f"--device {device} asked, but no CUDA device is available ({build} {torch.__version__}); "
                        "use --device cpu")
    if kind == "mps" and not _has_mps():
        raise UserError(f"--device {device} asked, but Apple's MPS is not available here; use --device cpu")
    if dtype is None:
        if kind == "cuda":
            dtype = "bfloat16" if native_bf16(torch.device(device)) else "float16"
        else:
            dtype = "float16" if kind == "mps" else "float32"
    if dtype not in DTYPES:
        raise UserError(f"unknown --dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    return torch.device(device), DTYPES[dtype]


def processes() -> tuple[int, int] | None:
    """(this process, number of processes) when launched as several (accelerate launch, torchrun), else None.
    Training splits the same global batch by rows and sums the gradients; generation splits the images."""
    import os
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState
    state = PartialState(cpu=not torch.cuda.is_available())  # joins the process group: gloo on CPU, NCCL on GPUs
    return state.process_index, state.num_processes


def _share(n: int) -> tuple[int, int]:
    """This process's contiguous share [lo, hi) of n items (all of them without a launch)."""
    world = processes()
    if world is None:
        return 0, n
    k, count = world
    return n * k // count, n * (k + 1) // count


def split_draw(prompts: list[str], seed: int, draw, everywhere: bool = False):
    """``draw(prompts, seed)`` -> images for every prompt (image i seeded seed + i), split across the processes of a
    multi-process launch: each draws a contiguous share and the shares are gathered in order. The first process
    gets all the images; the others get None (they write nothing), or all of them too with ``everywhere`` (every
    process scores its share of an evaluation). One process draws them all, as without a launch."""
    import numpy as np
    if processes() is None:
        return draw(prompts, seed)
    from accelerate.utils import gather_object
    lo, hi = _share(len(prompts))
    mine = draw(prompts[lo:hi], seed + lo) if hi > lo else []
    parts = gather_object([list(mine)])  # one list per process, in process order, on every process
    return np.stack([im for part in parts for im in part]) if everywhere or processes()[0] == 0 else None


def split_draw_to(pictures, prompts: list[str], seed: int, draw, chunk: int):
    """As ``split_draw``, but every ``chunk`` images go to disk as soon as they are drawn (``pictures``, an
    ``io.PictureFolder`` that all processes share), and every process gets the whole folder back once all are
    written: a feedback round trains on them in every process, and holds none of them in memory."""
    lo, hi = _share(len(prompts))
    for i in range(lo, hi, chunk):
        for j, im in enumerate(draw(prompts[i:min(i + chunk, hi)], seed + i)):
            pictures.write(i + j, im)
    if processes() is not None:
        from accelerate import PartialState
        PartialState().wait_for_everyone()
    return pictures
