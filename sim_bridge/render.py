"""Offscreen rendering of a scene's frames with one reused ``mujoco.Renderer`` (RGB, depth, segmentation)."""

from __future__ import annotations

import mujoco
import numpy as np


class FrameRenderer:
    """Renders (T, H, W, …) stacks from one camera; the GL context and buffers are made once and reused.

    Creating a ``mujoco.Renderer`` uploads the model's meshes and textures to the GL context, which costs far more
    than a frame; reuse one per (model, size). Use as a context manager or call :meth:`close`.
    """

    def __init__(self, model: mujoco.MjModel, height: int, width: int, depth: bool = False,
                 segmentation: bool = False):
        max_w, max_h = model.vis.global_.offwidth, model.vis.global_.offheight
        if not (0 < height <= max_h and 0 < width <= max_w):
            raise ValueError(f"size must be (H, W) with 0 < H <= {max_h} and 0 < W <= {max_w} (the model's offscreen "
                             f"buffer), got {(height, width)}")
        self.renderer = mujoco.Renderer(model, height, width)
        self.depth, self.segmentation = depth, segmentation
        self.height, self.width = height, width

    def allocate(self, T: int) -> dict[str, np.ndarray]:
        """Output stacks for T frames: rgb (T, H, W, 3) uint8, depth (T, H, W) float32, seg (T, H, W) int32."""
        H, W = self.height, self.width
        out = {"rgb": np.empty((T, H, W, 3), np.uint8)}
        if self.depth:
            out["depth"] = np.empty((T, H, W), np.float32)
        if self.segmentation:
            out["segmentation"] = np.empty((T, H, W), np.int32)
        return out

    def render_into(self, data: mujoco.MjData, camera: int, out: dict[str, np.ndarray], t: int,
                    seg_buf: np.ndarray | None = None) -> None:
        """Render frame ``t`` of the current ``data`` state into the stacks from :meth:`allocate`."""
        r = self.renderer
        r.update_scene(data, camera=camera)  # the scene is built once and drawn in every requested mode
        r.render(out=out["rgb"][t])
        if self.depth:
            r.enable_depth_rendering()
            r.render(out=out["depth"][t])
            r.disable_depth_rendering()
        if self.segmentation:
            r.enable_segmentation_rendering()
            seg = r.render(out=seg_buf)
            r.disable_segmentation_rendering()
            # Keep geom ids only; everything else (skybox, sites) is background −1.
            out["segmentation"][t] = np.where(seg[..., 1] == mujoco.mjtObj.mjOBJ_GEOM, seg[..., 0], -1)

    def close(self) -> None:
        self.renderer.close()

    def __enter__(self) -> FrameRenderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
