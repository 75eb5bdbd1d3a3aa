"""The hand control module: sparse 3D hand joints → control volume and motion features (the paper's method).

``geometry`` (projection, occlusion, heatmaps: pure functions) ← ``fusion`` (the splat and propagation on active
cells) ← ``module`` (``HandControlModule``, its modes and the authors' parameter names); ``baselines`` holds the
ablation's alternative control signals, ``upstream`` the check against the authors' reference vectors.
"""

from .module import UPSTREAM_NAMES, HandControlModule

__all__ = ["HandControlModule", "UPSTREAM_NAMES"]
