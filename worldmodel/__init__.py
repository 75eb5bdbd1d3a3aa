"""Video world model: the occlusion-aware hand control module and its Wan 2.1 I2V integration."""

from .control.module import HandControlModule

__all__ = ["HandControlModule"]

# Wan 2.1 I2V integration, training, sampling, editing: imported on first use (they pull in diffusers pipelines).
_LAZY = {"HandControlPipeline": "wan.pipeline", "HandControlledWan": "wan.adapter", "TrainConfig": "training.trainer",
         "Trainer": "training.trainer", "load_for_inference": "wan.pipeline", "edit_joints": "editing",
         "write_clip": "embodiments.clip", "read_clip": "embodiments.clip", "ClipDataset": "training.data",
         "load_preset": "wan.presets", "WanComponents": "wan.presets", "evaluate": "evaluation.report",
         "control_sensitivity": "evaluation.report", "load_probe": "evaluation.probe", "load_shipped": "wan.pipeline",
         "SamplingDefaults": "wan.sampling"}
__all__ += list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module = _LAZY[name]
        absolute = module if module.startswith("embodiments") else f"{__name__}.{module}"
        return getattr(importlib.import_module(absolute), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
