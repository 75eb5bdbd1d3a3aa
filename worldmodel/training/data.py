"""A torch Dataset over a folder of training clips (the file format is ``embodiments.clip``) and its collation."""

from __future__ import annotations

import numpy as np
import torch

from embodiments.clip import clip_joints, clip_length, find_clips, open_clip
from embodiments.transforms import scale_intrinsics
from worldmodel.wan.prompt import pad_prompt_embeds


class ClipDataset(torch.utils.data.Dataset):
    """Windows of ``num_frames`` frames from clip files, resized to (height, width), as model-ready tensors.

    Item: ``video`` (3, T, H, W) float in [−1, 1]; ``joints`` (T, 42, 3); ``valid`` (T, 42) bool; ``K`` (T, 3, 3)
    for the resized frames; ``prompt`` str; ``prompt_embeds`` (L, D) or None; ``index``; ``start``.
    The window start is drawn from a generator seeded by (seed, epoch, index), so data order and content are a
    pure function of the epoch — what exact resume needs.
    """

    def __init__(self, root, num_frames: int, height: int | None = None, width: int | None = None,
                 random_window: bool = True, seed: int = 0):
        if num_frames < 1 or (num_frames - 1) % 4:
            raise ValueError(f"num_frames must be 4k+1 (1, 5, 9, …, 81), got {num_frames}")
        for name, v in (("height", height), ("width", width)):
            if v is not None and (v <= 0 or v % 16):
                raise ValueError(f"{name} must be a positive multiple of 16, got {v}")
        self.paths = find_clips(root)
        self.num_frames, self.height, self.width = num_frames, height, width
        self.random_window, self.seed, self.epoch = random_window, seed, 0
        self.lengths = [clip_length(p) for p in self.paths]
        short = [(str(p), n) for p, n in zip(self.paths, self.lengths, strict=True) if n < num_frames]
        if short:
            raise ValueError(f"clips shorter than num_frames={num_frames}: {short[:3]}")

    def __len__(self) -> int:
        return len(self.paths)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def window_start(self, index: int) -> int:
        span = self.lengths[index] - self.num_frames
        if not self.random_window or span == 0:
            return 0
        return int(np.random.default_rng([self.seed, self.epoch, index]).integers(0, span + 1))

    def __getitem__(self, index: int) -> dict:
        path = self.paths[index]
        start = self.window_start(index)
        sl = slice(start, start + self.num_frames)
        with open_clip(path) as f:
            frames = f["frames"][sl]
            joints = clip_joints(f, path, sl)
            prompt = str(f.attrs.get("prompt", ""))
            pe = pad_prompt_embeds(torch.from_numpy(f["prompt_embeds"][()])) if "prompt_embeds" in f else None
        K = joints.frame_K()
        video = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1.0  # (3, T, H, W)
        H0, W0 = frames.shape[1:3]
        H, W = self.height or H0, self.width or W0
        if H % 16 or W % 16:
            raise ValueError(f"{path}: frame size {H0}x{W0} must be a multiple of 16, or set height/width")
        if (H, W) != (H0, W0):
            video = torch.nn.functional.interpolate(video.transpose(0, 1), size=(H, W), mode="bilinear",
                                                    antialias=True, align_corners=False).transpose(0, 1)
            K = scale_intrinsics(K, W / W0, H / H0)
        return {"video": video.clamp(-1, 1), "joints": torch.from_numpy(joints.positions),
                "valid": torch.from_numpy(joints.valid), "K": torch.from_numpy(np.asarray(K, np.float32)),
                "prompt": prompt, "prompt_embeds": pe, "index": index, "start": start}


def collate_clips(items: list[dict]) -> dict:
    """Stack tensors; prompts stay a list; prompt_embeds stacked only when every item has one (else None)."""
    out = {k: torch.stack([it[k] for it in items]) for k in ("video", "joints", "valid", "K")}
    out["prompt"] = [it["prompt"] for it in items]
    pes = [it["prompt_embeds"] for it in items]
    out["prompt_embeds"] = torch.stack(pes) if all(p is not None for p in pes) else None
    out["index"] = torch.tensor([it["index"] for it in items])
    out["start"] = torch.tensor([it["start"] for it in items])
    return out
