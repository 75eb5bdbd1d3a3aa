"""Pair configs: which keypoints each method matches between a source and a target hand, as YAML data.

A pair config lives in ``retarget/configs/<source>__<target>.yaml`` (or anywhere, passed as ``config=``).
Keypoints are named by the shared slot's joint name (``index_tip``, ``thumb_ip``, …; the side is implied by each
hand), never by indices or robot link names: the target's embodiment spec maps slots to its frames::

    source: mano_right
    target: inspire_right
    target_rotation_rpy_deg: [0.0, 90.0, -90.0]   # canonical hand frame in the target root frame, or 'auto'
    scale: auto                                   # or a number: target metres per source metre
    methods:
      position:
        keypoints: [thumb_tip, index_tip, ...]    # matched relative to the wrist
        weights: [1, 1, ...]                      # optional, one per keypoint
      vector:
        pairs: [[wrist, thumb_tip], [index_mcp, index_tip], ...]   # origin → task
      dexpilot:
        fingertips: [thumb_tip, index_tip, middle_tip]             # thumb first
        pinch_near: 0.015                         # source thumb–finger distance of a full pinch (m)
        pinch_far: 0.04                           # … where pinch weighting starts
    solver:                                       # optional SolverOptions overrides
      temporal_weight: 2.0e-5

Pairs without a file follow a generic rule (:func:`default_pair_config`): every method uses the slots both hands
fill, the rotation is measured from the target's own keypoints and the scale from bone lengths. This covers
same-embodiment round trips and robot ↔ robot pairs (Dex3 ↔ Inspire) through the shared slot space.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from embodiments.io_utils import read_yaml
from embodiments.layout import FINGERS, HAND_JOINT_NAMES

CONFIG_DIR = Path(__file__).parent / "configs"
METHODS = ("position", "vector", "dexpilot")

DEXPILOT_DEFAULTS = {"pinch_near": 0.015, "pinch_far": 0.04, "touch_distance": 0.002, "pinch_weight": 200.0,
                     "finger_gap": 0.02, "gap_weight": 50.0, "wrist_weight": 10.0, "pair_weight": 1.0}
_TOP_KEYS = {"source", "target", "target_rotation_rpy_deg", "scale", "methods", "solver", "description",
             "min_valid_fraction"}


def config_path(source: str, target: str) -> Path:
    return CONFIG_DIR / f"{source}__{target}.yaml"


def available_pairs() -> list[tuple[str, str]]:
    """(source, target) of every pair config shipped in ``retarget/configs``."""
    return sorted(tuple(p.stem.split("__", 1)) for p in CONFIG_DIR.glob("*__*.yaml"))


def load_pair_config(path: str | Path) -> dict[str, Any]:
    """Read and check a pair config file; errors name the file and the field."""
    raw = read_yaml(path, "retargeting pair config")
    return check_pair_config(raw, str(path))


def check_pair_config(raw: Any, where: str = "pair config") -> dict[str, Any]:
    """Validate the structure of a pair config mapping (slot names, method sections)."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a mapping with keys source, target, methods")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}")
    for key in ("source", "target", "methods"):
        if key not in raw:
            raise ValueError(f"{where}: missing '{key}'")
    methods = raw["methods"]
    if not isinstance(methods, dict) or not methods:
        raise ValueError(f"{where}: 'methods' must map method names ({', '.join(METHODS)}) to settings")
    for name, m in methods.items():
        if name not in METHODS:
            raise ValueError(f"{where}: unknown method {name!r}; methods are {', '.join(METHODS)}")
        if not isinstance(m, dict):
            raise ValueError(f"{where}: methods.{name} must be a mapping")
        _check_method(name, m, f"{where}: methods.{name}")
    rot = raw.get("target_rotation_rpy_deg", "auto")
    if rot != "auto" and not (isinstance(rot, list) and len(rot) == 3):
        raise ValueError(f"{where}: target_rotation_rpy_deg must be 'auto' or [roll, pitch, yaw] in degrees")
    scale = raw.get("scale", "auto")
    if scale != "auto" and not (isinstance(scale, int | float) and scale > 0):
        raise ValueError(f"{where}: scale must be 'auto' or a positive number, got {scale!r}")
    return raw


def _check_slot(name: Any, where: str) -> None:
    if name not in HAND_JOINT_NAMES:
        raise ValueError(f"{where}: unknown keypoint {name!r}; keypoints are {', '.join(HAND_JOINT_NAMES)}")


def _check_method(name: str, m: dict, where: str) -> None:
    if name == "position":
        kps = m.get("keypoints")
        if not isinstance(kps, list) or not kps:
            raise ValueError(f"{where}.keypoints must be a non-empty list of keypoint names")
        for k in kps:
            _check_slot(k, f"{where}.keypoints")
    elif name == "vector":
        pairs = m.get("pairs")
        if not isinstance(pairs, list) or not pairs:
            raise ValueError(f"{where}.pairs must be a non-empty list of [origin, task] keypoint names")
        for p in pairs:
            if not (isinstance(p, list | tuple) and len(p) == 2):
                raise ValueError(f"{where}.pairs entries must be [origin, task], got {p!r}")
            for k in p:
                _check_slot(k, f"{where}.pairs")
    else:
        tips = m.get("fingertips")
        if not isinstance(tips, list) or len(tips) < 2:
            raise ValueError(f"{where}.fingertips must list at least two fingertips, thumb first")
        for k in tips:
            _check_slot(k, f"{where}.fingertips")
        if tips[0] != "thumb_tip":
            raise ValueError(f"{where}.fingertips must start with thumb_tip (pinch weighting is thumb–finger)")
        unknown = set(m) - set(DEXPILOT_DEFAULTS) - {"fingertips", "wrist"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    if "weights" in m and name != "dexpilot":
        n = len(m.get("keypoints", m.get("pairs", [])))
        if not (isinstance(m["weights"], list) and len(m["weights"]) == n):
            raise ValueError(f"{where}.weights must be a list of {n} numbers")


def default_pair_config(source: str, target: str, source_joints: set[str],
                        target_joints: set[str]) -> dict[str, Any]:
    """The generic rule for a pair without a file: every method over the keypoints both hands fill."""
    common = [j for j in HAND_JOINT_NAMES if j in source_joints and j in target_joints]
    if "wrist" not in common:
        raise ValueError(f"{source} → {target}: both hands need a wrist keypoint for retargeting")
    tips = [f"{f}_tip" for f in FINGERS if f"{f}_tip" in common]
    vector_pairs = [["wrist", t] for t in tips]
    for f in FINGERS:  # finger direction (first joint → tip) and distal direction (last joint → tip)
        base = next((j for j in (f"{f}_cmc", f"{f}_mcp") if j in common), None)
        last = next((j for j in (f"{f}_dip", f"{f}_ip", f"{f}_pip") if j in common), None)
        for origin in dict.fromkeys((base, last)):
            if origin is not None and f"{f}_tip" in common:
                vector_pairs.append([origin, f"{f}_tip"])
    methods: dict[str, Any] = {"position": {"keypoints": [j for j in common if j != "wrist"]},
                               "vector": {"pairs": vector_pairs}}
    if "thumb_tip" in tips and len(tips) >= 2:
        methods["dexpilot"] = {"fingertips": tips}
    return {"source": source, "target": target, "target_rotation_rpy_deg": "auto", "scale": "auto",
            "methods": methods}


def resolve_pair_config(source: str, target: str, config: str | Path | dict | None, source_joints: set[str],
                        target_joints: set[str]) -> dict[str, Any]:
    """The config for a pair: an explicit one, the shipped file, or the generic rule (in that order)."""
    if isinstance(config, dict):
        cfg = check_pair_config(copy.deepcopy(config))
    elif config is not None:
        cfg = load_pair_config(config)
    elif config_path(source, target).exists():
        cfg = load_pair_config(config_path(source, target))
    else:
        cfg = default_pair_config(source, target, source_joints, target_joints)
    if cfg["source"] != source or cfg["target"] != target:
        raise ValueError(f"pair config is for {cfg['source']} → {cfg['target']}, not {source} → {target}")
    return cfg
