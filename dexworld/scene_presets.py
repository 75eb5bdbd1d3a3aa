"""Named scene randomisation presets (``SceneConfig`` overrides), shared by ``dexworld synth`` and the demo.

``tiny-sim`` is the data of the shipped tiny model: a narrower camera (±1 cm jitter, fovy 60–64°), 1–2 objects,
1–2 lights and no checker textures (flat/gradient table, flat objects), so a ~3 M-parameter video model and a small
VAE trained on a CPU can fit it.
"""

from __future__ import annotations

SCENE_PRESETS: dict[str, dict] = {
    "default": {},
    "tiny-sim": {"camera_eye_jitter": 0.01, "camera_target_jitter": 0.01, "fovy_deg": (60.0, 64.0),
                 "num_objects": (1, 2), "num_lights": (1, 2), "table_textures": ("flat", "gradient"),
                 "object_textures": ("flat",)},
}
