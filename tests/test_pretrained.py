"""HandControlPipeline.save_pretrained / from_pretrained: a diffusers pipeline folder that round-trips bitwise.

LoRA kept as a peft adapter or fused (W + s·B·A, checked against that formula written here), a folder that names its
base model instead of copying it, the shipped model by name, and one-line errors for bad folders.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _wm_helpers import SMALL_TINY, make_frames, make_joints, trained_tiny_pipeline

from worldmodel.wan.pipeline import HandControlPipeline
from worldmodel.wan.presets import build_tiny

torch.set_num_threads(1)
RANK, ALPHA = 4, 8.0


def _trained_tiny(components):
    """Widen + LoRA (rank 4, alpha 8: scale 2) with random non-zero B and control input channels."""
    return trained_tiny_pipeline(components, rank=RANK, alpha=ALPHA)


@pytest.fixture(scope="module")
def pipe():
    return _trained_tiny(build_tiny(**SMALL_TINY))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A base model folder kept elsewhere (the tiny stand-in for the 14B download)."""
    path = tmp_path_factory.mktemp("base") / "wan"
    build_tiny(**SMALL_TINY).save(path)
    return path


def _weights(p) -> dict[str, torch.Tensor]:
    out = {}
    for name in ("transformer", "vae", "image_encoder", "control"):
        out.update({f"{name}.{k}": v for k, v in getattr(p, name).state_dict().items()})
    return out


def _assert_same_weights(a, b):
    wa, wb = _weights(a), _weights(b)
    assert set(wa) == set(wb)
    bad = [k for k in wa if wa[k].dtype != wb[k].dtype or not torch.equal(wa[k], wb[k])]
    assert not bad, bad[:3]


def _frames(p, steps: int = 2) -> np.ndarray:
    return p(make_frames(1)[0], make_joints(5), prompt="a hand", num_inference_steps=steps, guidance_scale=3.0,
             seed=0, progress=False).frames


def _files(folder) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_adapter_round_trip_is_bitwise(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "a")
    index = json.loads((tmp_path / "a" / "model_index.json").read_text())
    assert index["_class_name"] == "HandControlPipeline"
    assert index["control"] == ["worldmodel.control.module", "HandControlModule"]
    assert index["prompt_embedder"] == ["worldmodel.wan.prompt", "HashPromptEmbedder"]
    assert index["transformer"] == ["diffusers", "WanTransformer3DModel"] and index["base_model"] is None
    assert index["sampling"]["num_inference_steps"] == 8  # the tiny preset's recorded defaults
    files = _files(tmp_path / "a")
    assert {"transformer_lora/adapter_model.safetensors", "transformer_lora/adapter_config.json",
            "control/config.json", "transformer/config.json"} <= files
    assert all(f.endswith((".json", ".safetensors", ".txt")) for f in files)
    # The transformer folder is plain diffusers: no peft wrapper names, 52 input channels.
    from safetensors import safe_open

    with safe_open(str(tmp_path / "a" / "transformer" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert not any("lora_" in k or "base_layer" in k for k in keys)
    assert json.loads((tmp_path / "a" / "transformer" / "config.json").read_text())["in_channels"] == 52

    a = HandControlPipeline.from_pretrained(tmp_path / "a")
    a.set_progress_bar_config(disable=True)
    _assert_same_weights(pipe, a)
    assert a.defaults == pipe.defaults and a.transformer.peft_config["default"].lora_alpha == ALPHA
    a.save_pretrained(tmp_path / "b")
    b = HandControlPipeline.from_pretrained(tmp_path / "b")
    b.set_progress_bar_config(disable=True)
    _assert_same_weights(a, b)
    fa, fb = _frames(a), _frames(b)
    assert np.array_equal(fa, fb)  # identical frames at a fixed seed
    np.testing.assert_allclose(fa, _frames(pipe), rtol=0, atol=1e-5)  # and those of the in-memory model


def test_fused_lora_equals_w_plus_scaled_ba_and_round_trips(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "f", lora="fused")
    assert not (tmp_path / "f" / "transformer_lora").exists()
    f = HandControlPipeline.from_pretrained(tmp_path / "f")
    f.set_progress_bar_config(disable=True)
    assert not any("lora_" in k for k in f.transformer.state_dict())
    # Reference merge written here: W + (alpha / r) · B · A for every LoRA layer.
    scale = ALPHA / RANK
    for name, module in pipe.transformer.named_modules():
        if hasattr(module, "lora_A") and "default" in module.lora_A:
            w = module.base_layer.weight + scale * module.lora_B["default"].weight @ module.lora_A["default"].weight
            torch.testing.assert_close(f.transformer.get_submodule(name).weight, w, rtol=0, atol=1e-6)
    np.testing.assert_allclose(_frames(f), _frames(pipe), rtol=0, atol=1e-4)  # same model, merged
    f.save_pretrained(tmp_path / "f2", lora="fused")
    f2 = HandControlPipeline.from_pretrained(tmp_path / "f2")
    _assert_same_weights(f, f2)
    f2.set_progress_bar_config(disable=True)
    assert np.array_equal(_frames(f), _frames(f2))


def test_folder_naming_a_base_stays_small(tmp_path, base):
    from worldmodel.wan.presets import load_local

    p = _trained_tiny(load_local(base))
    p.save_pretrained(tmp_path / "small", base=base)
    files = _files(tmp_path / "small")
    assert not any(f.startswith(("transformer/", "vae/", "image_encoder/", "prompt_embedder/")) for f in files)
    assert "transformer_patch_embedding.safetensors" in files
    size = sum((tmp_path / "small" / f).stat().st_size for f in files)
    base_size = sum(q.stat().st_size for q in base.rglob("*") if q.is_file())
    assert size < 0.5 * base_size
    s = HandControlPipeline.from_pretrained(tmp_path / "small")
    assert json.loads((tmp_path / "small" / "model_index.json").read_text())["base_model"] == str(base.resolve())
    _assert_same_weights(p, s)
    # Loaded from a folder naming a base, a re-save names it again (still small) and loads the same weights.
    s.save_pretrained(tmp_path / "again")
    assert not (tmp_path / "again" / "transformer").exists()
    _assert_same_weights(s, HandControlPipeline.from_pretrained(tmp_path / "again"))
    # self_contained copies everything in.
    s.save_pretrained(tmp_path / "whole", self_contained=True)
    assert (tmp_path / "whole" / "transformer").is_dir() and (tmp_path / "whole" / "vae").is_dir()
    _assert_same_weights(s, HandControlPipeline.from_pretrained(tmp_path / "whole"))
    # A moved base: a clear error, or base= to point at it.
    with pytest.raises(FileNotFoundError, match="base model folder .* does not exist"):
        HandControlPipeline.from_pretrained(tmp_path / "again", base=tmp_path / "gone")


def test_shipped_model_by_path_and_name():
    p = HandControlPipeline.from_pretrained("worldmodel/checkpoints/tiny-sim")
    q = HandControlPipeline.from_pretrained("tiny-sim")
    assert p.defaults.num_inference_steps == 10 and p.defaults.guidance_scale == 1.0  # its own recorded defaults
    assert (p.defaults.height, p.defaults.width, p.defaults.num_frames) == (128, 128, 17)
    _assert_same_weights(p, q)


def test_bad_folders_are_clear_errors(tmp_path, pipe):
    with pytest.raises(FileNotFoundError, match="no model folder at"):
        HandControlPipeline.from_pretrained(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a saved pipeline"):
        HandControlPipeline.from_pretrained(tmp_path / "empty")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a saved pipeline"):
        pipe.save_pretrained(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="lora must be one of"):
        pipe.save_pretrained(tmp_path / "x", lora="merged")
    # A plain diffusers folder without the control module is refused by name.
    import shutil

    pipe.save_pretrained(tmp_path / "nocontrol")
    index = json.loads((tmp_path / "nocontrol" / "model_index.json").read_text())
    (tmp_path / "nocontrol" / "model_index.json").write_text(json.dumps({**index, "control": [None, None]}))
    shutil.rmtree(tmp_path / "nocontrol" / "control")
    with pytest.raises(ValueError, match="names no control module"):
        HandControlPipeline.from_pretrained(tmp_path / "nocontrol")
