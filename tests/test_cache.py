"""Encoding cache: built once, trains to the same losses as the raw clips, refused when the encoders change."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _wm_helpers import CONTROL, SMALL_TINY, make_frames, make_joints, write_clips
from safetensors.torch import load_file

from dexworld.cli import main
from embodiments.clip import write_clip
from worldmodel.training.cache import CachedClipDataset, build_cache, read_manifest
from worldmodel.training.data import ClipDataset
from worldmodel.training.trainer import TrainConfig, Trainer
from worldmodel.wan.presets import build_tiny

torch.set_num_threads(1)
CFG = dict(tiny=SMALL_TINY, control=CONTROL, steps=3, lora_rank=4, warmup_steps=1, progress=False,
           checkpoint_every=0, joint_mask_prob=0.2, lr_lora=1e-3, lr_control=1e-3)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    write_clips(root / "clips", 3)
    (root / "cfg.json").write_text(json.dumps(CFG))
    assert main(["cache", "--config", str(root / "cfg.json"), "--data", str(root / "clips"), "--out",
                 str(root / "enc"), "--no-progress"]) == 0
    return root


def test_training_from_cache_matches_raw_clips(clips):
    raw = Trainer(TrainConfig(**CFG, data=str(clips / "clips"), out=str(clips / "run_raw")))
    losses_raw = raw.train()
    # The cached run goes through the command line: `dexworld train --cache` (no --data).
    assert main(["train", "--config", str(clips / "cfg.json"), "--cache", str(clips / "enc"), "--out",
                 str(clips / "run_cache"), "--no-progress"]) == 0
    losses_cache = [json.loads(ln)["loss"] for ln in (clips / "run_cache" / "loss.jsonl").read_text().splitlines()]
    assert len(losses_cache) == 3
    torch.testing.assert_close(torch.tensor(losses_cache), torch.tensor(losses_raw), rtol=1e-6, atol=1e-7)
    # The cached latents are the trainer's own encodings of the clips (x0 and the I2V condition).
    item = ClipDataset(clips / "clips", 5, 64, 64)[1]
    batch = {"video": item["video"][None], "prompt": [item["prompt"]], "prompt_embeds": None,
             "index": torch.tensor([1]), "start": torch.tensor([0])}
    enc = raw.encode_batch(batch)
    stored = load_file(clips / "enc" / "000001.safetensors")
    torch.testing.assert_close(stored["x0"], enc["x0"], rtol=0, atol=0)
    torch.testing.assert_close(stored["condition"], enc["condition"], rtol=0, atol=0)
    torch.testing.assert_close(stored["image_embeds"], enc["image_embeds"], rtol=0, atol=0)


def test_changed_encoders_invalidate_the_cache(clips):
    ok = build_tiny(**SMALL_TINY)
    CachedClipDataset(clips / "enc", ok, 5, 64, 64)  # the same encoders: accepted
    with pytest.raises(ValueError, match=r"different encoders — VAE \(config or weights\).*Rebuild it"):
        CachedClipDataset(clips / "enc", build_tiny(**SMALL_TINY, vae_base_dim=4), 5, 64, 64)
    with torch.no_grad():  # same config, one weight nudged
        next(ok.vae.parameters()).add_(1e-3)
    with pytest.raises(ValueError, match="VAE"):
        CachedClipDataset(clips / "enc", ok, 5, 64, 64)
    with pytest.raises(ValueError, match=r"window \(num_frames, height, width\)"):
        CachedClipDataset(clips / "enc", build_tiny(**SMALL_TINY), 5, 64, 48)
    with pytest.raises(ValueError, match="image encoder"):
        CachedClipDataset(clips / "enc", build_tiny(**{**SMALL_TINY, "seed": 1}), 5, 64, 64)
    with pytest.raises(FileNotFoundError, match="not an encoding cache"):
        read_manifest(clips / "clips")


def test_windows_of_a_long_clip(tmp_path):
    write_clip(tmp_path / "clips" / "long.h5", make_frames(13, seed=3), make_joints(13, seed=3), prompt="x")
    comps = build_tiny(**SMALL_TINY)
    build_cache(comps, tmp_path / "clips", tmp_path / "enc", window_stride=4, progress=False)
    m = read_manifest(tmp_path / "enc")
    assert m["clips"][0]["starts"] == [0, 4, 8] and m["window_stride"] == 4
    st = load_file(tmp_path / "enc" / "000000.safetensors")
    assert st["x0"].shape[:3] == (3, 16, 2) and st["joints"].shape == (3, 5, 42, 3)
    torch.testing.assert_close(st["joints"][2], torch.from_numpy(make_joints(13, seed=3).positions[8:13]).float())
    ds = CachedClipDataset(tmp_path / "enc", comps, 5, 64, 64, seed=0)
    seen = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        seen.add(ds[0]["start"])
    assert seen == {0, 4, 8}  # windows drawn among the cached ones, per epoch


def test_a_batch_encodes_only_its_windows_not_cached_yet(clips, monkeypatch):
    """With the in-memory cache, a batch that mixes cached and new windows (a run resumed mid-epoch) encodes only the
    new ones; what it returns for them is what `dexworld cache` stored for those clips."""
    t = Trainer(TrainConfig(**CFG, data=str(clips / "clips"), out=str(clips / "run_mixed")))
    ds = ClipDataset(clips / "clips", 5, 64, 64)
    encoded = []  # videos per VAE encode call (the latents' pass and the I2V condition's)
    encode = t.components.vae.encode
    monkeypatch.setattr(t.components.vae, "encode", lambda x, *a, **k: encoded.append(x.shape[0]) or encode(x, *a, **k))

    def batch(ids):
        items = [ds[i] for i in ids]
        return {"video": torch.stack([it["video"] for it in items]), "prompt": [it["prompt"] for it in items],
                "prompt_embeds": None, "index": torch.tensor(ids), "start": torch.zeros(len(ids), dtype=torch.long)}

    t.encode_batch(batch([0, 1]))
    assert sum(encoded) == 2 * 2  # two new windows: latents and condition for each
    enc = t.encode_batch(batch([1, 2, 0]))
    assert sum(encoded) == 2 * 2 + 2 * 1  # only window 2 was new
    stored = load_file(clips / "enc" / "000002.safetensors")
    torch.testing.assert_close(enc["x0"][1:2], stored["x0"], rtol=0, atol=1e-6)
    torch.testing.assert_close(enc["condition"][1:2], stored["condition"], rtol=0, atol=1e-6)
    t.encode_batch(batch([2, 0, 1]))
    assert sum(encoded) == 6  # all cached


def test_cache_for_fine_tuning_a_saved_pipeline(clips, tmp_path):
    """``dexworld cache --init PIPE`` encodes with the saved pipeline's own (trained) encoders at its recorded frame
    size, so ``train --init PIPE --cache`` runs the same steps as ``train --init PIPE --data``; the preset's cache is
    refused for that run, because the pipeline's VAE differs from a fresh build's."""
    from worldmodel.wan.presets import SamplingDefaults

    src = Trainer(TrainConfig(**CFG, data=str(clips / "clips"), out=str(tmp_path / "src"), num_frames=5))
    with torch.no_grad():  # a trained VAE: other weights than the preset builds
        for p in src.pipe.vae.parameters():
            p.mul_(1.01)
    src.pipe.defaults = SamplingDefaults(num_frames=5, height=48, width=80)  # neither the tiny nor the full default
    src.pipe.save_pretrained(tmp_path / "pipe", self_contained=True)
    pipe = str(tmp_path / "pipe")
    assert main(["cache", "--init", pipe, "--data", str(clips / "clips"), "--out", str(tmp_path / "enc"),
                 "--no-progress"]) == 0
    assert read_manifest(tmp_path / "enc")["fingerprint"]["params"] == {"num_frames": 5, "height": 48, "width": 80}
    flags = ["--config", str(clips / "cfg.json"), "--init", pipe, "--steps", "2", "--no-progress"]
    assert main(["train", *flags, "--data", str(clips / "clips"), "--out", str(tmp_path / "raw")]) == 0
    assert main(["train", *flags, "--cache", str(tmp_path / "enc"), "--out", str(tmp_path / "cached")]) == 0
    losses = [[json.loads(ln)["loss"] for ln in (tmp_path / run / "loss.jsonl").read_text().splitlines()]
              for run in ("raw", "cached")]
    assert len(losses[0]) == 2
    torch.testing.assert_close(torch.tensor(losses[1]), torch.tensor(losses[0]), rtol=1e-6, atol=1e-7)
    assert main(["train", *flags, "--cache", str(clips / "enc"), "--out", str(tmp_path / "stale")]) == 1
    assert main(["cache", "--init-vae", pipe + "/vae", "--data", str(clips / "clips"), "--out",
                 str(tmp_path / "enc2")]) == 1  # --init-vae swaps the VAE of an --init pipeline: needs one
    assert not (tmp_path / "enc2").exists()


def test_windows_encoded_in_batches_match_one_at_a_time(clips, tmp_path):
    """``batch_size`` only groups the encoder calls (across clips, as a training batch does): each window's stored
    encodings are those of encoding it alone, to float rounding, and the manifests agree."""
    comps = build_tiny(**SMALL_TINY)
    build_cache(comps, clips / "clips", tmp_path / "b2", progress=False, batch_size=2)  # 3 clips: batches of 2 and 1
    one, two = read_manifest(clips / "enc"), read_manifest(tmp_path / "b2")
    assert two["clips"] == one["clips"] and two["fingerprint"] == one["fingerprint"]
    for entry in one["clips"]:
        a, b = load_file(clips / "enc" / entry["file"]), load_file(tmp_path / "b2" / entry["file"])
        assert set(a) == set(b)
        for k in a:
            torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-5)


def test_cache_sees_frame_0_as_the_pipeline_records(tmp_path):
    """A pipeline that records ``clip_preprocess="resize"`` (the authors' recipe; a converted release) trains on
    CLIP embeddings of the whole frame 0 resized; its cache must hold those, not the centre crop's, and a cache
    built with the other preprocessing is refused for it."""
    import dataclasses

    for i in range(2):  # wide frames: a centre crop and a resize of them differ
        frames = (np.random.default_rng(i).random((5, 64, 96, 3)) * 255).astype(np.uint8)
        write_clip(tmp_path / "clips" / f"w{i}.h5", frames, make_joints(5, seed=i), prompt=f"grab {i}")
    crop = build_tiny(**SMALL_TINY)
    resize = build_tiny(**SMALL_TINY)
    resize.defaults = dataclasses.replace(resize.defaults, clip_preprocess="resize")
    for name, comps in (("crop", crop), ("resize", resize)):
        build_cache(comps, tmp_path / "clips", tmp_path / name, 5, 64, 96, progress=False)
    trainer = Trainer(TrainConfig(**CFG, data=str(tmp_path / "clips"), out=str(tmp_path / "run"), height=64,
                                  width=96), components=resize)
    item = ClipDataset(tmp_path / "clips", 5, 64, 96)[0]
    enc = trainer.encode_batch({"video": item["video"][None], "prompt": [item["prompt"]], "prompt_embeds": None,
                                "index": torch.tensor([0]), "start": torch.tensor([0])})
    stored = {n: load_file(tmp_path / n / "000000.safetensors")["image_embeds"] for n in ("crop", "resize")}
    torch.testing.assert_close(stored["resize"], enc["image_embeds"], rtol=0, atol=0)
    assert (stored["crop"] - stored["resize"]).abs().max() > 1e-3
    CachedClipDataset(tmp_path / "resize", resize, 5, 64, 96)
    with pytest.raises(ValueError, match="image encoder"):
        CachedClipDataset(tmp_path / "crop", resize, 5, 64, 96)


def test_a_batch_of_mixed_clips_keeps_each_stored_prompt_embedding(tmp_path):
    """A clip that stores its prompt embedding keeps it when batched with one that does not (whose prompt is
    embedded from its text), as when each is encoded alone."""
    write_clip(tmp_path / "clips" / "a.h5", make_frames(5, seed=0), make_joints(5, seed=0), prompt="grab 0")
    stored = np.random.default_rng(0).normal(size=(7, SMALL_TINY["text_dim"])).astype(np.float32)
    write_clip(tmp_path / "clips" / "b.h5", make_frames(5, seed=1), make_joints(5, seed=1), prompt="grab 1",
               prompt_embeds=stored)
    comps = build_tiny(**SMALL_TINY)
    for b in (1, 2):
        build_cache(comps, tmp_path / "clips", tmp_path / f"b{b}", progress=False, batch_size=b)
    for name in ("000000.safetensors", "000001.safetensors"):
        torch.testing.assert_close(load_file(tmp_path / "b2" / name)["prompt_embeds"],
                                   load_file(tmp_path / "b1" / name)["prompt_embeds"], rtol=0, atol=0)
    got = load_file(tmp_path / "b2" / "000001.safetensors")["prompt_embeds"]
    torch.testing.assert_close(got[:7], torch.from_numpy(stored))
    assert not got[7:].any()  # padded with zeros to the text length
