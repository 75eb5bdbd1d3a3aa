"""Which feature layout a LeRobot dataset has, told from its feature names, and how to read hands out of it.

Layouts (docs/data.md lists sources and what is assumed):

* ``dexworld`` — our own exports (``meta/dexworld.json`` sidecar; hands, camera and hand root poses recorded).
* ``unitree`` — Unitree's ``unitree_IL_lerobot``: ``observation.state``/``action`` = 14 arm joints
  (``kLeftShoulderPitch`` … ``kRightWristYaw``) then the hand values (G1 + Dex3: 7 + 7 radians; G1 + Inspire: 6 + 6
  normalised, 1 = open); ``names`` often nested (``[[...]]``); cameras ``observation.images.cam_left_high`` etc.;
  ``robot_type`` ``Unitree_G1_Dex3`` / ``Unitree_G1_Inspire``.
* ``humanoid_everyday`` — the Humanoid Everyday authors' LeRobot copies (``he2lerobot.py``):
  ``observation.images.egocentric``, ``observation.arm_joints`` (14), ``observation.leg_joints``,
  ``observation.hand_joints`` (14 Dex3 radians on G1 / 12 Inspire values on H1-2), ``action`` = hand values then
  ``sol_q``.
* ``named`` — any other dataset whose ``observation.state`` names the hands' columns as we export them.
"""

from __future__ import annotations

import dataclasses

from .robots import robot_spec, robot_with_hands
from .unitree import arm_feature_names, detect_hands, dex3_feature_names, inspire_feature_names, robot_from_type

# Preferred head-camera feature names, first found wins when a dataset has several cameras.
HEAD_CAMERAS = ("cam_high", "cam_left_high", "egocentric", "ego", "head", "cam_right_high")
HE_ARM, HE_HAND, HE_LEG = "observation.arm_joints", "observation.hand_joints", "observation.leg_joints"


@dataclasses.dataclass
class ReadLayout:
    """How to read one dataset's hands.

    Attributes:
        kind: ``dexworld``, ``unitree``, ``humanoid_everyday`` or ``named``.
        hands: registered hand names, left first.
        robot: robot spec name (with those hands) whose arm chain places the hands, or None.
        state_keys: features concatenated (in order) into the state vector.
        state_names: one name per state column.
        action_keys / action_names: the same for the commanded values (empty: no usable action).
        camera_key: the video feature of the head camera.
    """

    kind: str
    hands: list[str]
    robot: str | None
    state_keys: list[str]
    state_names: list[str]
    action_keys: list[str]
    action_names: list[str]
    camera_key: str


def flat_names(names) -> list[str]:
    """Feature ``names`` as a flat list: nested lists (unitree_IL_lerobot's ``[[...]]``) and dicts flattened."""
    if isinstance(names, dict):
        names = next(iter(names.values()), [])
    if names and isinstance(names[0], list | tuple):
        names = [n for group in names for n in group]
    return [str(n) for n in names or []]


def _width(feats: dict, key: str) -> int:
    shape = feats[key].get("shape") or [0]
    return int(shape[0])


def camera_key(feats: dict, camera: str | None, default: str | None = None) -> str:
    """The video feature to read: ``camera`` (name or full key), else ``default``, else the only video, else the
    first of :data:`HEAD_CAMERAS` present."""
    videos = [k for k, f in feats.items() if f.get("dtype") == "video"]
    if not videos:
        raise ValueError("the dataset has no video feature (observation.images.<camera>)")
    for name in (camera, default):
        if name:
            key = name if name.startswith("observation.images.") else f"observation.images.{name}"
            if key not in feats:
                raise ValueError(f"no camera {name!r}: video features are {videos}")
            return key
    if len(videos) == 1:
        return videos[0]
    for name in HEAD_CAMERAS:
        if f"observation.images.{name}" in feats:
            return f"observation.images.{name}"
    raise ValueError(f"choose the camera (--camera): video features are {videos}")


def resolve(feats: dict, robot_type: str | None = None, sidecar: dict | None = None, hands: list[str] | None = None,
            robot: str | None = None, camera: str | None = None) -> ReadLayout:
    """The :class:`ReadLayout` of a dataset's features; explicit ``hands``/``robot``/``camera`` win over detection."""
    cam = camera_key(feats, camera, sidecar["camera"] if sidecar else None)
    if "observation.state" in feats:
        state_keys, names = ["observation.state"], flat_names(feats["observation.state"].get("names"))
        action_keys = ["action"] if "action" in feats else []
        action_names = flat_names(feats["action"].get("names")) if action_keys else []
        if len(names) != _width(feats, "observation.state"):
            raise ValueError(f"observation.state has {_width(feats, 'observation.state')} columns but "
                             f"{len(names)} names; the hands' columns are found by name")
        detected = detect_hands(names)
        kind = "dexworld" if sidecar else ("unitree" if detected else "named")
    elif HE_ARM in feats and HE_HAND in feats:
        kind = "humanoid_everyday"
        n_arm, n_hand = _width(feats, HE_ARM), _width(feats, HE_HAND)
        if n_arm != 14 or n_hand not in (12, 14):
            raise ValueError(f"Humanoid Everyday copy: expected {HE_ARM} of 14 and {HE_HAND} of 14 (G1) or 12 "
                             f"(H1-2) values, got {n_arm} and {n_hand}")
        kind_hand = dex3_feature_names if n_hand == 14 else inspire_feature_names
        hand_names = list(kind_hand("left")) + list(kind_hand("right"))
        state_keys, names = [HE_ARM, HE_HAND], list(arm_feature_names()) + hand_names
        detected = detect_hands(names)
        robot = robot or ("g1" if n_hand == 14 else "h1_2")
        # action = hand values then sol_q; on G1 the hand values are Dex3 radians like the state. The H1-2 copy's
        # hand actions are joint angles of a different order (see docs/data.md), so they are not read.
        action_keys, action_names = [], []
        if "action" in feats and n_hand == 14 and _width(feats, "action") >= n_hand:
            action_keys = ["action"]
            action_names = hand_names + [f"sol_q.{i}" for i in range(_width(feats, "action") - n_hand)]
    else:
        raise ValueError("no hand states: the dataset has neither observation.state nor "
                         f"{HE_ARM} + {HE_HAND}; features are {sorted(feats)}")
    hands = list(hands or (sidecar["hands"] if sidecar else detected))
    if not hands:
        raise ValueError("which hands does the dataset hold? its state names are not Unitree's Dex3/Inspire names; "
                         "pass --embodiment (e.g. dex3_left dex3_right)")
    if robot is None and kind == "unitree" and all(n in names for n in arm_feature_names()):
        robot = robot_from_type(robot_type) or ("g1" if hands[0].startswith("dex3") else None)
        if robot is None:
            raise ValueError(f"Inspire hands with arm joints but robot_type {robot_type!r} names no robot; "
                             "pass --robot g1 or h1_2")
    if robot is not None:
        robot = robot_with_hands(robot_spec(robot).name, hands)
    return ReadLayout(kind, hands, robot, state_keys, names, action_keys, action_names, cam)
