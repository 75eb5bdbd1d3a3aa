"""argparse ``type=`` functions shared by the subcommands: numbers are checked when the command line is parsed.

Each raises ``argparse.ArgumentTypeError``, so argparse prints ``dexworld CMD: error: argument --X: ...`` and exits
with status 2 before any work starts.
"""

from __future__ import annotations

import argparse
import math

MAX_SIDE = 4096  # pixels; larger frames do not fit any GPU this model runs on
MAX_FRAMES = 1025
MAX_STEPS = 10_000_000


def _number(text: str, kind: type) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") \
            from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def int_range(low: int | None = None, high: int | None = None):
    """An integer in [low, high] (either bound may be None)."""

    def parse(text: str) -> int:
        value = _number(text, int)
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected an integer {_bounds(low, high)}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def float_range(low: float | None = None, high: float | None = None, low_open: bool = False):
    """A finite number in [low, high] (``low_open``: strictly above low)."""

    def parse(text: str) -> float:
        value = _number(text, float)
        below = low is not None and (value <= low if low_open else value < low)
        if below or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected a number {_bounds(low, high, low_open)}, got {value:g}")
        return value

    parse.__name__ = "number"
    return parse


def _bounds(low, high, low_open: bool = False) -> str:
    def fmt(x) -> str:
        return str(x) if isinstance(x, int) else f"{x:g}"

    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{fmt(low)}, {fmt(high)}]"
    if low is not None:
        return f"{'>' if low_open else '>='} {fmt(low)}"
    return f"<= {fmt(high)}"


positive_int = int_range(1, MAX_STEPS)
nonnegative_int = int_range(0, MAX_STEPS)
seed = int_range(0, 2**63 - 1)
port = int_range(0, 65535)
positive_float = float_range(0.0, None, low_open=True)
nonnegative_float = float_range(0.0)
probability = float_range(0.0, 1.0)
guidance = float_range(0.0, 100.0)
frames = int_range(1, MAX_FRAMES)


def int_list(count: int, low: int, high: int):
    """An argparse type: ``count`` comma-separated integers in [low, high], e.g. ``16,32,64,96``."""

    def parse(text: str) -> tuple[int, ...]:
        parts = [t.strip() for t in text.split(",")]
        if len(parts) != count:
            raise argparse.ArgumentTypeError(f"expected {count} comma-separated integers, got {text!r}")
        return tuple(int_range(low, high)(t) for t in parts)

    return parse


def frames_4k1(text: str) -> int:
    """A video frame count of the form 4k+1 (5, 9, ..., 81, ...)."""
    value = int_range(1, MAX_FRAMES)(text)
    if (value - 1) % 4:
        raise argparse.ArgumentTypeError(f"expected a frame count of the form 4k+1 (e.g. 17), got {value}")
    return value


def side16(text: str) -> int:
    """A frame side in pixels: a positive multiple of 16, at most MAX_SIDE."""
    value = int_range(16, MAX_SIDE)(text)
    if value % 16:
        raise argparse.ArgumentTypeError(f"expected a multiple of 16 pixels (e.g. 128), got {value}")
    return value


def sides16(text: str) -> tuple[int, ...]:
    """Distinct frame sides, each a multiple of 16 and at least 32, comma-separated, e.g. ``112,128,144``."""
    parts = [t.strip() for t in text.split(",")]
    values = tuple(side16(t) for t in parts)
    if len(set(values)) != len(values) or min(values) < 32:
        raise argparse.ArgumentTypeError(f"expected distinct multiples of 16, each at least 32, got {text!r}")
    return values


def side(text: str) -> int:
    """A frame side in pixels, 16..MAX_SIDE."""
    return int_range(16, MAX_SIDE)(text)


def device(text: str) -> str:
    """A torch device that exists on this machine: cpu, cuda, cuda:N or mps."""
    import torch

    try:
        dev = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"expected a torch device such as cpu, cuda or cuda:0, got {text!r}") \
            from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text!r}: no CUDA GPU is available on this machine (use --device cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: MPS is not available on this machine (use --device cpu)")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda, cuda:N or mps, got {text!r}")
    return text
