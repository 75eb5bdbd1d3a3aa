"""Library progress bars off: a command shows its own progress (or none, with ``--no-progress``), and the bars of
transformers' weight loading, diffusers' pipeline loading and datasets' map would print through it."""

from __future__ import annotations


def quiet_library_progress() -> None:
    import datasets
    import diffusers
    import transformers

    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
