"""Encode clips once (VAE latents, I2V condition, CLIP image and prompt embeddings), train from the encodings.

Layout of a cache folder::

    manifest.json          format, version, fingerprints of the encoders, window params, one entry per clip
    000000.safetensors     per clip, stacked over its cached windows W:
                           x0 (W, 16, T', h, w), condition (W, 20, T', h, w), prompt_embeds (L, D),
                           image_embeds (W, L', D') if the preset has an image encoder,
                           joints (W, T, 42, 3), valid (W, T, 42), K (W, T, 3, 3), starts (W,)

The fingerprint of each encoder is a BLAKE2 hash of its config and every weight's bytes (plus the image
processor's / prompt embedder's config and the window size), so a cache built with other encoders, other weights or
another resolution is refused with a message naming what changed. The encodings come from the function the trainer
encodes with (``worldmodel.training.encoding.encode_windows``), so training from a cache gives the same losses as
training from the clips.

Windows: every ``window_stride`` frames (default: ``num_frames``, non-overlapping). The training window is drawn
among the cached ones from the same (seed, epoch, index) generator as ``ClipDataset``; a clip exactly one window
long gives the very same samples as the raw clips.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from embodiments.io_utils import atomic_dir, read_json
from worldmodel.training.data import ClipDataset

CACHE_FORMAT = "dexworld.encoding_cache"
CACHE_VERSION = 1
MANIFEST = "manifest.json"
__all__ = ["build_cache", "fingerprint", "CachedClipDataset", "collate_cached", "read_manifest", "load_encoders"]


# ---------------------------------------------------------------------------------------------- fingerprints
# Config entries that change on save/load without changing the computation (dtype is covered by the weights).
_VOLATILE = {"architectures", "transformers_version", "torch_dtype", "dtype", "name_or_path"}

def _module_hash(module: torch.nn.Module, extra: dict | None = None) -> str:
    """BLAKE2b of the module's config and of every parameter/buffer (name, dtype, shape, bytes)."""
    h = hashlib.blake2b(digest_size=16)
    cfg = getattr(module, "config", None)
    cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg) if cfg is not None else {}
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_") and k not in _VOLATILE}
    h.update(json.dumps({"class": type(module).__name__, "config": cfg, "extra": extra or {}}, sort_keys=True,
                        default=str).encode())
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def fingerprint(components, num_frames: int, height: int, width: int) -> dict:
    """Per-encoder hashes and the window params; ``None`` for an encoder the components lack."""
    fp = {"vae": _module_hash(components.vae), "image_encoder": None, "text": None,
          "params": {"num_frames": int(num_frames), "height": int(height), "width": int(width)}}
    if components.image_encoder is not None:
        proc = components.image_processor.to_dict() if components.image_processor is not None else {}
        extra = {"processor": proc}
        if components.defaults.clip_preprocess != "center_crop":  # absent for the default, as in earlier caches
            extra["clip_preprocess"] = components.defaults.clip_preprocess
        fp["image_encoder"] = _module_hash(components.image_encoder, extra)
    if components.text_encoder is not None:
        tok = components.tokenizer
        fp["text"] = _module_hash(components.text_encoder, {"tokenizer": type(tok).__name__,
                                                             "vocab": getattr(tok, "vocab_size", None)})
    elif components.prompt_embedder is not None:
        pe = components.prompt_embedder
        fp["text"] = hashlib.blake2b(json.dumps({"class": type(pe).__name__, "dim": pe.dim, "seq_len": pe.seq_len,
                                                 "max_words": pe.max_words}).encode(), digest_size=16).hexdigest()
    return fp


_WHAT = {"vae": "VAE (config or weights)", "image_encoder": "image encoder / image processor",
         "text": "text encoder / prompt embedder", "params": "window (num_frames, height, width)"}


def check_fingerprint(cache: Path, stored: dict, current: dict) -> None:
    """Raise ValueError naming every encoder whose fingerprint differs (an encoder not loaded now is skipped)."""
    changed = []
    for key, what in _WHAT.items():
        if key == "params":
            if stored.get(key) != current.get(key):
                changed.append(f"{what}: cache {stored.get(key)} vs now {current.get(key)}")
        elif current.get(key) is not None and stored.get(key) != current.get(key):
            changed.append(f"{what}: cache {stored.get(key)} vs now {current.get(key)}")
    if changed:
        raise ValueError(f"the encoding cache {cache} was built with different encoders — " + "; ".join(changed)
                         + f". Rebuild it: dexworld cache --data CLIPS --out {cache} (the same preset, base path "
                           "or --init as the training run)")


# ---------------------------------------------------------------------------------------------- encoding
def _pipeline(components):
    """A pipeline carrying only the encoders, and the sampling defaults that say how CLIP sees frame 0."""
    from worldmodel.wan.pipeline import HandControlPipeline

    pipe = HandControlPipeline(tokenizer=components.tokenizer, text_encoder=components.text_encoder,
                               vae=components.vae, scheduler=components.scheduler,
                               image_processor=components.image_processor, image_encoder=components.image_encoder,
                               prompt_embedder=components.prompt_embedder, sampling=components.defaults.to_dict())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_cache(components, data, out: str | os.PathLike, num_frames: int | None = None, height: int | None = None,
                width: int | None = None, window_stride: int | None = None, device: str | torch.device = "cpu",
                progress: bool = True, batch_size: int = 1) -> Path:
    """Encode every clip under ``data`` into the cache folder ``out`` (written atomically: temp dir, rename).

    Windows are encoded ``batch_size`` at a time, across clips, as a training batch is: faster per window on a CPU
    at the tiny sizes (``benchmarks/train_cache.py``), more memory at full size.
    """
    from tqdm.auto import tqdm

    from embodiments.clip import find_clips
    from worldmodel.training.data import collate_clips
    from worldmodel.training.encoding import encode_windows

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    d = components.defaults
    num_frames, height, width = num_frames or d.num_frames, height or d.height, width or d.width
    stride = window_stride or num_frames
    if stride < 1:
        raise ValueError(f"window_stride must be >= 1, got {stride}")
    root = Path(data)
    paths = find_clips(root)
    dataset = _FixedWindow(paths, num_frames, height, width, random_window=False)
    pipe = _pipeline(components)
    for m in (components.vae, components.image_encoder, components.text_encoder):
        if m is not None:
            m.to(device).eval()
    windows = [(i, s) for i in range(len(paths)) for s in range(0, dataset.lengths[i] - num_frames + 1, stride)]
    done: dict[int, list] = {}  # clip index → [(item, encodings)] of its windows encoded so far
    entries = []
    out = Path(out)
    with atomic_dir(out) as tmp, tqdm(total=len(paths), desc="cache", unit="clip", disable=not progress) as bar:
        for b in range(0, len(windows), batch_size):
            chunk = windows[b:b + batch_size]
            items = []
            for i, s in chunk:
                dataset.start = s
                items.append(dataset[i])
            batch = collate_clips(items)
            enc = encode_windows(pipe, batch["video"], batch["prompt_embeds"], batch["prompt"], height, width, device)
            for j, ((i, _), item) in enumerate(zip(chunk, items, strict=True)):
                one = {k: None if v is None else v[j:j + 1] for k, v in enc.items()}
                if item["prompt_embeds"] is not None:  # a clip's stored embedding, even in a batch of mixed clips
                    one["prompt_embeds"] = item["prompt_embeds"][None].float()
                done.setdefault(i, []).append((item, one))
            complete = windows[b + batch_size][0] if b + batch_size < len(windows) else len(paths)
            for i in sorted(k for k in done if k < complete):  # clips whose every window is encoded
                entries.append(_write_clip_entry(tmp, i, paths[i], root, done.pop(i)))
                bar.update(1)
        manifest = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "preset": components.name,
                    "fingerprint": fingerprint(components, num_frames, height, width), "window_stride": stride,
                    "clips": entries}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return out


def _write_clip_entry(folder: Path, i: int, path: Path, root: Path, windows: list) -> dict:
    """One clip's file ``{i:06d}.safetensors`` (its windows stacked) and its manifest entry."""
    from safetensors.torch import save_file

    tensors = {
        "x0": torch.cat([e["x0"] for _, e in windows]).cpu(),
        "condition": torch.cat([e["condition"] for _, e in windows]).cpu(),
        "prompt_embeds": windows[0][1]["prompt_embeds"][0].cpu(),
        "joints": torch.stack([it["joints"] for it, _ in windows]).float(),
        "valid": torch.stack([it["valid"] for it, _ in windows]),
        "K": torch.stack([it["K"] for it, _ in windows]).float(),
        "starts": torch.tensor([it["start"] for it, _ in windows], dtype=torch.int64),
    }
    if windows[0][1]["image_embeds"] is not None:
        tensors["image_embeds"] = torch.cat([e["image_embeds"] for _, e in windows]).cpu()
    name = f"{i:06d}.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, folder / name)
    rel = path.relative_to(root) if root.is_dir() else Path(path.name)
    return {"source": str(rel), "file": name, "starts": tensors["starts"].tolist()}


class _FixedWindow(ClipDataset):
    """ClipDataset whose window starts at ``self.start`` (set per window by the cache builder)."""

    start = 0

    def window_start(self, index: int) -> int:
        return self.start


def load_encoders(path: str | os.PathLike, torch_dtype: torch.dtype = torch.float32):
    """The encoders of a local diffusers-format Wan I2V directory, without the (14B) transformer.

    Same classes and options as ``presets.load_local``; ``transformer`` is None in the result.
    """
    from diffusers import AutoencoderKLWan

    from worldmodel.wan.presets import (
        FULL_DEFAULTS,
        HashPromptEmbedder,
        SamplingDefaults,
        WanComponents,
        _load_scheduler,
        _own_storage,
    )

    path = Path(path).expanduser()
    if not (path / "vae").is_dir():
        raise FileNotFoundError(f"{path} is not a diffusers-format Wan checkpoint: no vae/ subfolder")
    kw = {"local_files_only": True}
    vae = AutoencoderKLWan.from_pretrained(path / "vae", torch_dtype=torch.float32, **kw).eval()
    image_encoder = image_processor = text_encoder = tokenizer = prompt_embedder = None
    if (path / "image_encoder").is_dir():
        from transformers import CLIPImageProcessor, CLIPVisionModel

        image_encoder = CLIPVisionModel.from_pretrained(path / "image_encoder", dtype=torch.float32, **kw).eval()
        image_processor = CLIPImageProcessor.from_pretrained(path / "image_processor", **kw)
    if (path / "prompt_embedder").is_dir():
        prompt_embedder = HashPromptEmbedder.from_pretrained(path / "prompt_embedder")
    elif (path / "text_encoder").is_dir():
        from transformers import AutoTokenizer, UMT5EncoderModel

        text_encoder = UMT5EncoderModel.from_pretrained(path / "text_encoder", dtype=torch_dtype, **kw).eval()
        tokenizer = AutoTokenizer.from_pretrained(path / "tokenizer", **kw)
    name, defaults = "wan2.1-i2v-14b-480p", FULL_DEFAULTS
    if (path / "dexworld_preset.json").exists():
        meta = read_json(path / "dexworld_preset.json", "preset file")
        name, defaults = meta.get("name", name), SamplingDefaults(**meta.get("defaults", {}))
    for m in (vae, image_encoder, text_encoder):  # as load_local does (bitwise-equal encodings)
        _own_storage(m)
    return WanComponents(name=name, transformer=None, vae=vae, scheduler=_load_scheduler(path / "scheduler"),
                         image_encoder=image_encoder, image_processor=image_processor, text_encoder=text_encoder,
                         tokenizer=tokenizer, prompt_embedder=prompt_embedder, source=str(path.resolve()),
                         defaults=defaults)


def read_manifest(cache: str | os.PathLike) -> dict:
    cache = Path(cache)
    f = cache / MANIFEST
    if not f.exists():
        raise FileNotFoundError(f"{cache} is not an encoding cache (no {MANIFEST}); build one with 'dexworld cache'")
    m = read_json(f, "cache manifest")
    if m.get("format") != CACHE_FORMAT or m.get("version") != CACHE_VERSION:
        raise ValueError(f"{cache}: unsupported cache format/version {m.get('format')}/{m.get('version')}; rebuild "
                         "it with 'dexworld cache'")
    return m


# ---------------------------------------------------------------------------------------------- training side
class CachedClipDataset(torch.utils.data.Dataset):
    """Items like ``ClipDataset``'s minus the video, plus its encodings (x0, condition, prompt/image embeddings).

    Refuses a cache whose fingerprint differs from ``components``' encoders or from (num_frames, height, width).
    """

    def __init__(self, cache, components, num_frames: int, height: int, width: int, seed: int = 0):
        self.root = Path(cache)
        self.manifest = read_manifest(self.root)
        check_fingerprint(self.root, self.manifest["fingerprint"], fingerprint(components, num_frames, height,
                                                                               width))
        self.entries = self.manifest["clips"]
        if not self.entries:
            raise ValueError(f"{self.root}: the cache holds no clips")
        self.seed, self.epoch = seed, 0

    def __len__(self) -> int:
        return len(self.entries)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def window(self, index: int) -> int:
        """Index of the cached window, drawn as ``ClipDataset.window_start`` draws a start."""
        n = len(self.entries[index]["starts"])
        if n == 1:
            return 0
        return int(np.random.default_rng([self.seed, self.epoch, index]).integers(0, n))

    def __getitem__(self, index: int) -> dict:
        from safetensors import safe_open

        w = self.window(index)
        path = self.root / self.entries[index]["file"]
        with safe_open(os.fspath(path), framework="pt") as f:
            keys = set(f.keys())
            item = {k: f.get_slice(k)[w] for k in ("x0", "condition", "joints", "valid", "K")}
            item["prompt_embeds"] = f.get_tensor("prompt_embeds")
            item["image_embeds"] = f.get_slice("image_embeds")[w] if "image_embeds" in keys else None
        item["index"], item["start"] = index, self.entries[index]["starts"][w]
        return item


def collate_cached(items: list[dict]) -> dict:
    out = {k: torch.stack([it[k] for it in items]) for k in ("x0", "condition", "joints", "valid", "K",
                                                              "prompt_embeds")}
    out["image_embeds"] = None if items[0]["image_embeds"] is None else torch.stack([it["image_embeds"]
                                                                                     for it in items])
    out["index"] = torch.tensor([it["index"] for it in items])
    out["start"] = torch.tensor([it["start"] for it in items])
    return out
