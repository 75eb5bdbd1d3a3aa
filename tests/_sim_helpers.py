"""Shared motion for the two-hand simulation tests and benchmark: hands side by side over the table, closing."""

from __future__ import annotations

import numpy as np

import embodiments
from sim_bridge.motion import hand_axes, wrist_pose


def pair_motion(names, T: int, xs=(-0.08, 0.08), z: float = 0.08, closing: float = 0.6, keys: str = "name",
                turn: float = 0.2):
    """Per-hand q (T, dof) closing from open by ``closing`` of the way, and palm-down wrist paths (T, 4, 4) at
    x = ``xs``, rising 2 cm and turning by up to ``turn`` rad outwards; dicts keyed by hand name or side."""
    q, w = {}, {}
    s = np.linspace(0, 1, T)
    for name, x in zip(names, xs, strict=True):
        emb = embodiments.get(name)
        ax = hand_axes(emb)
        key = name if keys == "name" else emb.side
        q[key] = ax.open_q + closing * s[:, None] * (ax.closed_q - ax.open_q)
        w[key] = np.stack([wrist_pose(ax, [x, 0.14 + 0.02 * si, z], yaw=turn * si * np.sign(x)) for si in s])
    return q, w
