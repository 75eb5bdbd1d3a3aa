"""Video world model: the occlusion-aware hand control module and its Wan 2.1 I2V integration."""

from .control import HandControlModule

__all__ = ["HandControlModule"]

# Wan 2.1 I2V integration, training, sampling, editing: imported on first use (they pull in diffusers pipelines).
_LAZY = {"HandControlPipeline": "pipeline", "HandControlledWan": "wan", "TrainConfig": "training",
         "Trainer": "training", "load_for_inference": "training", "edit_joints": "editing", "write_clip": "data",
         "read_clip": "data", "ClipDataset": "data", "load_preset": "presets", "WanComponents": "presets",
         "evaluate": "evaluation", "control_sensitivity": "evaluation", "load_probe": "probe",
         "load_shipped": "presets"}
__all__ += list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
