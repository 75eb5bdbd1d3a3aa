"""A training run's folder: what a run writes there, so that a new run never lands on an old one unasked,
``--overwrite`` deletes only the run's own files, and a resume first clears what a killed save left behind."""

from __future__ import annotations

import os
from pathlib import Path

from embodiments.io_utils import clean_atomic_leftovers

# Files and folders a run writes directly in its folder (atomic temporaries are hidden ``.<name>.*`` beside them).
_RUN_FILES = ("latest", "loss.jsonl", "vae_loss.jsonl")
_ATOMIC_TARGETS = ("checkpoint-*", "latest", "loss.jsonl", "base")


def run_outputs(out: str | os.PathLike) -> list[Path]:
    """The files and folders of a training run in ``out``: checkpoints, ``latest``, loss logs, the tiny base,
    sample videos and leftovers of a killed save. Empty for a new or empty folder."""
    out = Path(out)
    if not out.is_dir():
        return []
    found = [out / n for n in _RUN_FILES if (out / n).is_file()]
    found += sorted(p for p in out.glob("checkpoint-*") if (p / "dexworld_checkpoint.json").is_file())
    if (out / "base" / "dexworld_preset.json").is_file():
        found.append(out / "base")
    found += sorted(out.glob("samples/step_*.mp4"))
    found += sorted(p for t in _ATOMIC_TARGETS for p in out.glob(f".{t}.*"))
    found += sorted((out / "samples").glob(".step_*.mp4.*"))
    return found


def is_started_run(out: str | os.PathLike) -> bool:
    """Whether ``out`` holds a run that trained (a loss log, a checkpoint or a ``latest`` pointer); a folder with
    only the tiny base of a start that stopped before its first step is not one (the next start reuses that base)."""
    out = Path(out)
    return (out / "latest").exists() or (out / "loss.jsonl").exists() or any(
        (p / "dexworld_checkpoint.json").is_file() for p in out.glob("checkpoint-*"))


def clear_run(out: str | os.PathLike) -> list[Path]:
    """Delete the run's own files (:func:`run_outputs`) from ``out``, nothing else; returns what was deleted."""
    import shutil

    out = Path(out)
    gone = run_outputs(out)
    for p in gone:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
    samples = out / "samples"
    if samples.is_dir() and not any(samples.iterdir()):
        samples.rmdir()
    return gone


def clean_killed_save(out: str | os.PathLike) -> list[Path]:
    """Remove the temporary folders and files of a checkpoint save (or ``latest`` / loss-log rewrite) that was
    killed; a checkpoint set aside by a killed swap is put back first. Returns what was removed."""
    return clean_atomic_leftovers(out, _ATOMIC_TARGETS)
