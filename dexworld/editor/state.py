"""The editor's state, free of any UI: loaded joints, the timeline frame, the selection, keyframe edits with
undo/redo, and export. The viser layer (``app.py``) only forwards user actions here and draws what it reads back.

Every edit goes through :func:`worldmodel.editing.edit_joints`, so what the browser shows is exactly what the
library computes.
"""

from __future__ import annotations

import dataclasses
import io
import os
import tempfile
from pathlib import Path

import numpy as np

from embodiments.layout import HAND_JOINT_NAMES, NUM_HAND_JOINTS, NUM_SLOTS, SIDES, SLOT_NAMES, hand_slots
from embodiments.sparse import SparseJoints
from embodiments.view_check import check_image_size, check_view
from worldmodel.editing import FALLOFFS, edit_joints

SELECTION_MODES = ("joint", "set", "hand")
MAX_UPLOAD_BYTES = 256 * 1024 * 1024


# ---------------------------------------------------------------------------------------------- input checks
def check_editable(joints: SparseJoints) -> SparseJoints:
    """Joints the editor can work on: camera frame, with intrinsics K, at least one valid joint."""
    if not isinstance(joints, SparseJoints):
        raise ValueError(f"joints must be SparseJoints, got {type(joints).__name__}")
    if joints.frame != "camera":
        raise ValueError(f"joints must be in the camera frame (frame 'camera'), got frame {joints.frame!r}; "
                         "transform them into the reference camera first")
    if joints.K is None:
        raise ValueError("joints carry no intrinsics K (3, 3); the editor needs K to place the reference image")
    if not joints.valid.any():
        raise ValueError("joints have no valid slot in any frame: nothing to edit")
    return joints


def load_joints_bytes(name: str, content: bytes) -> SparseJoints:
    """Parse an uploaded SparseJoints file (``.npz``/``.h5``) and check it is editable; ValueError names the file."""
    suffix = Path(name).suffix.lower()
    if suffix not in (".npz", ".h5", ".hdf5"):
        raise ValueError(f"{name!r}: joints must be a SparseJoints .npz or .h5 file (written by SparseJoints.save)")
    if not content:
        raise ValueError(f"{name!r}: the file is empty")
    if len(content) > MAX_UPLOAD_BYTES:
        raise ValueError(f"{name!r}: {len(content) / 2**20:.0f} MiB is too large for a joints file")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(content)
        try:
            joints = SparseJoints.load(path)
        except (ValueError, KeyError, OSError) as e:
            msg = str(e).replace(str(path), name)
            raise ValueError(f"{name!r}: not a valid SparseJoints file: {msg}") from None
        except Exception as e:  # zip/h5 parsers raise assorted types on corrupt bytes
            raise ValueError(f"{name!r}: could not read it as {suffix} ({type(e).__name__}: {e})") from None
    try:
        return check_editable(joints)
    except ValueError as e:
        raise ValueError(f"{name!r}: {e}") from None


def load_image_bytes(name: str, content: bytes) -> np.ndarray:
    """Decode an uploaded image to (H, W, 3) uint8 RGB; ValueError for undecodable or out-of-range sizes."""
    import PIL.Image

    if not content:
        raise ValueError(f"{name!r}: the file is empty")
    try:
        with PIL.Image.open(io.BytesIO(content)) as im:
            image = np.asarray(im.convert("RGB"))
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError, DecompressionBombError, …
        raise ValueError(f"{name!r}: not a readable image ({type(e).__name__})") from None
    return check_image(image, name=name)


def check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """(H, W, 3) uint8 with both sides in [MIN_IMAGE_SIDE, MAX_IMAGE_SIDE]."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{name}: expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    check_image_size(*image.shape[:2], name=name)
    return image


def check_image_matches(image: np.ndarray, joints: SparseJoints, name: str = "image") -> None:
    """The reference image must be the one K refers to, and the joints must fit it (:func:`check_view`)."""
    check_view(image.shape[:2], joints, name=name)


def largest_4k1(n: int) -> int:
    """Largest frame count of the form 4k+1 not above n (the video model's frame counts)."""
    if n < 1:
        raise ValueError(f"need at least one frame, got {n}")
    return 4 * ((n - 1) // 4) + 1


# ---------------------------------------------------------------------------------------------- state
@dataclasses.dataclass(frozen=True)
class HistoryEntry:
    label: str
    joints: SparseJoints


class EditorState:
    """Joints being edited, with selection, timeline frame, falloff settings and a linear undo/redo history.

    History holds snapshots (T × 42 × 3 floats each: a few kB for typical clips), so undo is exact and cheap.
    """

    def __init__(self, joints: SparseJoints, max_history: int = 500):
        if max_history < 2:
            raise ValueError(f"max_history must be >= 2, got {max_history}")
        self.max_history = max_history
        self.falloff = "cosine"
        self.width = 4.0
        self.load(joints)

    # ------------------------------------------------------------------ loading
    def load(self, joints: SparseJoints) -> None:
        """Start over with new joints: the history is cleared and they become the unedited original."""
        joints = check_editable(joints)
        self.original = joints
        self._history: list[HistoryEntry] = [HistoryEntry("loaded", joints)]
        self._index = 0
        self.frame = 0
        self.selection: tuple[int, ...] = (self.default_joint(),)
        self.mode = "joint"

    def default_joint(self) -> int:
        """The index fingertip of the first hand with valid joints (the classic joint to drag), else any valid."""
        for side in ("right", "left"):
            tip = hand_slots(side).start + HAND_JOINT_NAMES.index("index_tip")
            if self.original.valid[:, tip].any():
                return tip
        return int(np.flatnonzero(self.original.valid.any(0))[0])

    # ------------------------------------------------------------------ reading
    @property
    def joints(self) -> SparseJoints:
        """The current (edited) joints."""
        return self._history[self._index].joints

    @property
    def num_frames(self) -> int:
        return len(self.original)

    @property
    def can_undo(self) -> bool:
        return self._index > 0

    @property
    def can_redo(self) -> bool:
        return self._index + 1 < len(self._history)

    @property
    def history_labels(self) -> list[str]:
        return [h.label for h in self._history[: self._index + 1]]

    @property
    def present_sides(self) -> tuple[str, ...]:
        v = self.original.valid.any(0)
        return tuple(s for s in SIDES if v[hand_slots(s).start:hand_slots(s).stop].any())

    def selectable_names(self) -> list[str]:
        """Names of slots valid in some frame (what a user can pick)."""
        return [SLOT_NAMES[i] for i in np.flatnonzero(self.original.valid.any(0))]

    def anchor_position(self, joints: SparseJoints | None = None) -> np.ndarray:
        """Position (3,) of the first selected joint at the current frame: where the gizmo sits."""
        j = self.joints if joints is None else joints
        return j.positions[self.frame, self.selection[0]].astype(np.float64)

    def displacement(self) -> np.ndarray:
        """(T, 42, 3) current − original positions in metres (zero in invalid slots)."""
        return (self.joints.positions.astype(np.float64) - self.original.positions.astype(np.float64))

    def selection_label(self) -> str:
        if self.mode == "hand" and len(self.selection) == NUM_HAND_JOINTS:
            return f"whole {SLOT_NAMES[self.selection[0]].split('_')[0]} hand"
        return ", ".join(SLOT_NAMES[i] for i in self.selection)

    # ------------------------------------------------------------------ timeline, selection, settings
    def set_frame(self, frame: int) -> None:
        frame = int(frame)
        if not 0 <= frame < self.num_frames:
            raise ValueError(f"frame must be in 0..{self.num_frames - 1}, got {frame}")
        self.frame = frame

    def set_falloff(self, kind: str | None = None, width: float | None = None) -> None:
        if kind is not None:
            if kind not in FALLOFFS:
                raise ValueError(f"falloff must be one of {FALLOFFS}, got {kind!r}")
            self.falloff = kind
        if width is not None:
            if not (np.isfinite(width) and width >= 0):
                raise ValueError(f"falloff width must be >= 0 frames, got {width}")
            self.width = float(width)

    def set_mode(self, mode: str) -> None:
        """``joint`` (one joint), ``set`` (a subset built by picking joints) or ``hand`` (the whole hand)."""
        if mode not in SELECTION_MODES:
            raise ValueError(f"selection mode must be one of {SELECTION_MODES}, got {mode!r}")
        self.mode = mode
        self.pick(self.selection[0], toggle=False)

    def pick(self, joint: int | str, toggle: bool = True) -> tuple[int, ...]:
        """Pick a joint (slot index or name) as the current mode says; returns the new selection.

        ``joint`` mode: the selection becomes that joint. ``hand``: its whole hand, anchored at the wrist (the pivot
        for rotations). ``set``: the joint is added (or, with ``toggle``, removed if already in, keeping ≥ 1).
        """
        i = self._slot(joint)
        if self.mode == "joint":
            self.selection = (i,)
        elif self.mode == "hand":
            side = SIDES[i // NUM_HAND_JOINTS]
            self.selection = tuple(s for s in hand_slots(side) if self.original.valid[:, s].any())
        else:
            sel = list(self.selection)
            if i in sel:
                if toggle and len(sel) > 1:
                    sel.remove(i)
            else:
                sel.append(i)
            self.selection = tuple(sel)
        return self.selection

    def _slot(self, joint: int | str) -> int:
        if isinstance(joint, str):
            if joint not in SLOT_NAMES:
                raise ValueError(f"unknown joint {joint!r}; joints are '<left|right>_<name>' with name in "
                                 f"{', '.join(HAND_JOINT_NAMES)}")
            i = SLOT_NAMES.index(joint)
        else:
            i = int(joint)
            if not 0 <= i < NUM_SLOTS:
                raise ValueError(f"joint index must be in 0..{NUM_SLOTS - 1}, got {i}")
        if not self.original.valid[:, i].any():
            raise ValueError(f"joint {SLOT_NAMES[i]} is not valid in any frame of these joints; pick another")
        return i

    # ------------------------------------------------------------------ editing
    def preview(self, offset=None, rotation=None) -> SparseJoints:
        """The joints an edit would give (nothing recorded): the selection moved rigidly by ``offset`` (3,) metres
        and ``rotation`` (3,) rotation vector about the anchor, at the current frame, spread by the falloff."""
        if offset is None and rotation is None:
            return self.joints
        off = np.zeros(3) if offset is None else _vec3(offset, "offset")
        rot = None if rotation is None else _vec3(rotation, "rotation")
        if rot is not None and not np.any(rot):
            rot = None
        return edit_joints(self.joints, list(self.selection), offset=off, frames=self.frame, falloff=self.falloff,
                           width=self.width, rotation=rot)

    def apply(self, offset=None, rotation=None, label: str | None = None) -> SparseJoints:
        """Commit an edit (see :meth:`preview`); it becomes undoable and clears the redo branch."""
        off = np.zeros(3) if offset is None else _vec3(offset, "offset")
        rot = np.zeros(3) if rotation is None else _vec3(rotation, "rotation")
        if not np.any(off) and not np.any(rot):
            return self.joints
        new = self.preview(off, rot)
        if label is None:
            parts = []
            if np.any(off):
                parts.append("move " + ", ".join(f"{v * 100:+.1f}" for v in off) + " cm")
            if np.any(rot):
                parts.append(f"rotate {np.degrees(np.linalg.norm(rot)):.0f}°")
            label = f"{' and '.join(parts)} {self.selection_label()} @ frame {self.frame}"
        self._push(label, new)
        return new

    def apply_target(self, target, rotation=None) -> SparseJoints:
        """Commit an edit that puts the anchor joint at ``target`` (3,) at the current frame (gizmo release)."""
        off = _vec3(target, "target") - self.anchor_position()
        return self.apply(off, rotation)

    def reset(self) -> SparseJoints:
        """Return to the unedited joints as an undoable step."""
        if self.joints is not self.original:
            self._push("reset to the loaded joints", self.original)
        return self.joints

    def _push(self, label: str, joints: SparseJoints) -> None:
        del self._history[self._index + 1:]
        self._history.append(HistoryEntry(label, joints))
        if len(self._history) > self.max_history:
            # Drop the oldest edits but keep the loaded joints as the bottom of the stack.
            del self._history[1:len(self._history) - self.max_history + 1]
        self._index = len(self._history) - 1

    def undo(self) -> bool:
        if not self.can_undo:
            return False
        self._index -= 1
        return True

    def redo(self) -> bool:
        if not self.can_redo:
            return False
        self._index += 1
        return True

    # ------------------------------------------------------------------ export
    def export_joints(self, path: str | os.PathLike) -> Path:
        """Save the edited joints (``.npz`` or ``.h5``, atomically) through ``SparseJoints.save``."""
        return self.joints.save(path)


def _vec3(x, name: str) -> np.ndarray:
    v = np.asarray(x, dtype=np.float64)
    if v.shape != (3,) or not np.isfinite(v).all():
        raise ValueError(f"{name} must be three finite numbers (x, y, z), got {x!r}")
    return v
