"""Work items of ``dexworld imagine``: one imagined episode each, planned deterministically from the sources.

An item names its source episode, its variant (the unedited joints, the k-th random edit, or the reference frame of
another episode) and its seed. Its ``key`` is unique and stable across runs and process layouts, and is stored as
the episode's source id in the output dataset: a rerun skips the keys already written.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from embodiments.layout import FINGERS, SLOT_NAMES, hand_slots
from embodiments.sparse import SparseJoints

EDIT_KINDS = ("joint", "finger", "hand")


@dataclasses.dataclass(frozen=True)
class WorkItem:
    """One imagined episode: source episode ``episode`` (its id ``source``), ``seed``, and at most one variation:
    ``edit`` (index of the random joint edit) or ``reference`` (index of the episode whose first frame is used)."""

    source: str
    episode: int
    seed: int
    edit: int | None = None
    reference: int | None = None

    @property
    def key(self) -> str:
        variant = f"edit{self.edit}" if self.edit is not None else (
            f"ref{self.reference}" if self.reference is not None else "orig")
        return f"{self.source}|{variant}|seed{self.seed}"


def plan(sources: list[str], seeds: int, edits: int = 0, cross_references: int = 0, seed_base: int = 0
         ) -> list[WorkItem]:
    """Every work item, in a fixed order: per source episode the unedited joints, ``edits`` random edits and
    ``cross_references`` reference frames taken from the following episodes, each with ``seeds`` seeds."""
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    if edits < 0 or cross_references < 0:
        raise ValueError("--edits and --cross-references must be >= 0")
    n = len(sources)
    if cross_references >= n and cross_references:
        raise ValueError(f"--cross-references {cross_references} needs more than {cross_references} source episodes, "
                         f"got {n}")
    items = []
    for e, src in enumerate(sources):
        variants = [{}] + [{"edit": k} for k in range(edits)] + \
                   [{"reference": (e + r) % n} for r in range(1, cross_references + 1)]
        for v in variants:
            items += [WorkItem(src, e, seed_base + s, **v) for s in range(seeds)]
    keys = [it.key for it in items]
    if len(set(keys)) != len(keys):
        raise ValueError("source episodes must have distinct ids")
    return items


def shard(items: list[WorkItem], rank: int, world: int) -> list[WorkItem]:
    """The items of shard ``rank`` of ``world``: every world-th item of the full plan (stable under resumes)."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} out of range for {world} shards")
    return items[rank::world]


def draw_edit(joints: SparseJoints, episode: int, k: int, max_offset: float, seed_base: int = 0) -> dict:
    """Parameters of the k-th random edit of episode ``episode``: a single joint, a finger or a whole hand of a
    hand with valid joints, moved by a random offset of at most ``max_offset`` metres at a random keyframe with a
    cosine falloff. Deterministic in (``seed_base``, ``episode``, ``k``)."""
    if max_offset <= 0:
        raise ValueError(f"--edit-max-offset must be > 0 metres, got {max_offset}")
    rng = np.random.default_rng([seed_base, episode, k, 1847])
    T = len(joints)
    sides = [s for s in ("left", "right") if joints.valid[:, hand_slots(s)].any()]
    if not sides:
        raise ValueError(f"episode {episode} has no valid joints to edit")
    side = sides[rng.integers(len(sides))]
    kind = EDIT_KINDS[rng.integers(len(EDIT_KINDS))]
    valid = [i for i in hand_slots(side) if joints.valid[:, i].any()]
    if kind == "joint":
        ids = [SLOT_NAMES[valid[rng.integers(len(valid))]]]
    elif kind == "finger":
        fingers = [f for f in FINGERS if any(SLOT_NAMES[i].startswith(f"{side}_{f}_") for i in valid)]
        finger = fingers[rng.integers(len(fingers))]
        ids = [SLOT_NAMES[i] for i in valid if SLOT_NAMES[i].startswith(f"{side}_{finger}_")]
    else:
        ids = [side]
    direction = rng.normal(size=3)
    offset = direction / np.linalg.norm(direction) * max_offset * rng.uniform(0.5, 1.0)
    return {"kind": kind, "joint_ids": ids, "offset": [round(float(v), 6) for v in offset],
            "frames": int(rng.integers(1, T)) if T > 1 else 0, "width": max(1.0, T / 2), "falloff": "cosine"}


def apply_edit(joints: SparseJoints, params: dict) -> SparseJoints:
    """The joints moved by an edit drawn with :func:`draw_edit` (through ``worldmodel.editing.edit_joints``)."""
    from worldmodel.editing import edit_joints

    return edit_joints(joints, params["joint_ids"], offset=params["offset"], frames=params["frames"],
                       width=params["width"], falloff=params["falloff"])
