"""What the editor's Generate and Simulate buttons run, without any UI.

* :class:`VideoGenerator`: loads the hand-controlled video model once (a checkpoint, the shipped tiny model, or —
  with neither — a freshly initialised ``tiny`` preset, flagged as untrained) and samples a video from the
  reference image and the edited joints, reporting progress per denoising step.
* :func:`simulate` (``sim_bridge.plan``): retargets the edited hand to a robot hand, recovers the hand's pose in
  the camera, and rolls it out in a MuJoCo scene whose head camera has the reference camera's field of view.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from embodiments.sparse import SparseJoints
from sim_bridge.plan import SIM_MODES, SimResult, simulate, simulation_pair  # noqa: F401 (re-exported)

from .state import largest_4k1

ROBOTS = ("inspire_right", "inspire_left", "dex3_right", "dex3_left")

Progress = Callable[[int, int], None]


def find_shipped_checkpoint() -> Path | None:
    """The shipped tiny-sim model (``worldmodel/checkpoints/tiny-sim``), or None when this checkout has none."""
    from worldmodel.wan.presets import shipped_path

    try:
        return shipped_path("tiny-sim")
    except FileNotFoundError:
        return None


@dataclasses.dataclass
class GenerateSettings:
    """Sampling settings; None means the model's own default."""

    steps: int | None = None
    guidance: float | None = None
    seed: int = 0
    prompt: str = ""
    max_frames: int = 33

    def __post_init__(self) -> None:
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {self.max_frames}")


class VideoGenerator:
    """Lazily loaded ``HandControlPipeline`` plus what the UI should say about it.

    Args:
        checkpoint: a model folder (``save_pretrained``) or a checkpoint written by ``dexworld train``; None → the
            shipped tiny model, or a fresh
            ``tiny`` preset model (random weights) when none is shipped.
        tiny_overrides: TinyConfig fields for the fresh model (tests use smaller sizes).
        use_shipped: with no ``checkpoint``, look for the shipped tiny model (False: always the fresh one).
    """

    def __init__(self, checkpoint: str | os.PathLike | None = None, tiny_overrides: dict | None = None,
                 use_shipped: bool = True):
        if checkpoint is not None:
            self.checkpoint: Path | None = Path(checkpoint)
        else:
            self.checkpoint = find_shipped_checkpoint() if use_shipped else None
        if self.checkpoint is not None and not any((self.checkpoint / f).is_file() for f in (
                "model_index.json", "dexworld_checkpoint.json")):
            raise FileNotFoundError(f"{self.checkpoint} is not a dexworld checkpoint nor a saved model (no "
                                    "dexworld_checkpoint.json or model_index.json)")
        self.tiny_overrides = dict(tiny_overrides or {})
        self._pipe = None
        self._lock = threading.Lock()

    @property
    def untrained(self) -> bool:
        return self.checkpoint is None

    def describe(self) -> str:
        if self.checkpoint is None:
            return ("a freshly initialised 'tiny' model with random weights (no checkpoint given and none shipped); "
                    "its videos show noise, not your edit. Pass --checkpoint DIR for a trained model.")
        return f"checkpoint {self.checkpoint}"

    def pipeline(self):
        with self._lock:
            if self._pipe is None:
                self._pipe = self._load()
            return self._pipe

    def _load(self):
        if self.checkpoint is not None:
            from worldmodel.wan.pipeline import HandControlPipeline

            pipe = HandControlPipeline.from_pretrained(self.checkpoint)
        else:
            import torch

            from worldmodel.control.module import HandControlModule
            from worldmodel.wan.pipeline import HandControlPipeline
            from worldmodel.wan.presets import build_tiny

            components = build_tiny(**self.tiny_overrides)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                control = HandControlModule(latent_channels=components.vae.config.z_dim).eval()
            pipe = HandControlPipeline.from_components(components, control)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def frames_for(self, joints: SparseJoints, settings: GenerateSettings) -> int:
        """How many joint frames a video uses: the most of the form 4k+1 within ``max_frames``."""
        return largest_4k1(min(len(joints), settings.max_frames))

    def __call__(self, image: np.ndarray, joints: SparseJoints, settings: GenerateSettings | None = None,
                 progress: Progress | None = None) -> np.ndarray:
        """Video (T, H, W, 3) uint8 of the first :meth:`frames_for` frames of ``joints`` from ``image``."""
        from worldmodel.evaluation.video import to_uint8

        settings = settings or GenerateSettings()
        pipe = self.pipeline()
        n = self.frames_for(joints, settings)
        steps = settings.steps or pipe.defaults.num_inference_steps
        with self._lock:  # one sampling at a time; the progress hook below is per call
            if progress is not None:
                # HandControlPipeline has no per-step callback; it iterates ``self.progress_bar(timesteps)``, so an
                # instance attribute wrapping that iterable reports each step.
                def bar(iterable=None, total=None):
                    items = list(iterable)
                    for i, item in enumerate(items):
                        yield item
                        progress(i + 1, len(items))

                pipe.progress_bar = bar
            try:
                out = pipe(image, joints[:n], prompt=settings.prompt, num_inference_steps=steps,
                           guidance_scale=settings.guidance, seed=settings.seed, progress=progress is not None)
            finally:
                pipe.__dict__.pop("progress_bar", None)
        return to_uint8(out.frames)
