"""Multi-process training on CPU (gloo): 2 processes × batch b ≡ 1 process × batch 2b, with the transformer
replicated (DDP) or sharded (FSDP2); resume across process counts and across DDP ↔ FSDP.

The 2-process runs are the real command line (``torchrun … -m dexworld.cli train``), with accelerate picking up the
process group (``ACCELERATE_USE_CPU=1`` → gloo). The comparisons run in this process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _wm_helpers import CONTROL, SMALL_TINY, write_clips
from safetensors.torch import load_file

from worldmodel.training.distributed import micro_batches, sample_generator, shard_transformer
from worldmodel.training.trainer import TrainConfig, Trainer
from worldmodel.wan.checkpoint import read_checkpoint_meta

torch.set_num_threads(1)
# One xdist worker for the whole file (`make test` runs `--dist loadgroup`): the 2-process fixture runs once.
pytestmark = pytest.mark.xdist_group("distributed")
ROOT = Path(__file__).resolve().parents[1]
STEPS = 4
CFG = dict(tiny=SMALL_TINY, control=CONTROL, steps=STEPS, checkpoint_every=2, keep_checkpoints=0, lora_rank=4,
           warmup_steps=1, progress=False, joint_mask_prob=0.2, lr_lora=1e-3, lr_control=1e-3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(run: Path) -> list[float]:
    return [json.loads(ln)["loss"] for ln in (run / "loss.jsonl").read_text().splitlines() if ln.strip()]


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    out = {f"lora.{k}": v for k, v in load_file(ckpt / "lora" / "adapter_model.safetensors").items()}
    out.update({f"pe.{k}": v for k, v in load_file(ckpt / "patch_embedding.safetensors").items()})
    out.update({f"control.{k}": v for k, v in
                load_file(ckpt / "control" / "diffusion_pytorch_model.safetensors").items()})
    return out


def _train_two_processes(root: Path, out: str, *args: str) -> str:
    """`torchrun --nproc_per_node 2 -m dexworld.cli train --batch-size 1 ...`; returns its stdout."""
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "dexworld.cli", "train", "--config", str(root / "cfg.json"),
           "--data", str(root / "clips"), "--out", str(root / out), "--batch-size", "1", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 process(es)" in proc.stdout
    return proc.stdout


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    """4 clips; `torchrun --nproc_per_node 2 -m dexworld.cli train --batch-size 1` for 4 steps (DDP)."""
    root = tmp_path_factory.mktemp("dist")
    write_clips(root / "clips", 4)
    (root / "cfg.json").write_text(json.dumps(CFG))
    assert "FSDP" not in _train_two_processes(root, "run2")
    return root


def _one_process(root: Path, out: str, **kw) -> TrainConfig:
    cfg = TrainConfig(**{**CFG, "data": str(root / "clips"), "out": str(root / out), "batch_size": 2, **kw})
    return cfg


def test_two_processes_match_one_process_with_double_batch(two_process_run):
    root = two_process_run
    run2 = root / "run2"
    meta = read_checkpoint_meta(run2 / "checkpoint-000004")
    # 2 ranks × 2 batches of 1 into epoch 1: the data position is stored as a sample count.
    assert meta["num_processes"] == 2 and meta["batch_in_epoch"] == 2 and meta["samples_in_epoch"] == 4
    assert len(list(run2.glob("checkpoint-*"))) == 2  # written once (main process), not once per rank
    assert len(_losses(run2)) == STEPS  # one log line per step: the main process logs the global mean

    trainer = Trainer(_one_process(root, "run1"))
    losses1 = trainer.train()
    trainer.save_checkpoint()
    torch.testing.assert_close(torch.tensor(_losses(run2)), torch.tensor(losses1), rtol=1e-5, atol=1e-6)
    assert max(losses1) - min(losses1) > 1e-3  # the curve moves: the comparison is not between constants
    # Same weights after 4 steps (gradients all-reduced over both ranks, incl. the control module's).
    w2, w1 = _weights(run2 / "checkpoint-000004"), _weights(root / "run1" / "checkpoint-000004")
    assert w2.keys() == w1.keys()
    # Adam divides by √v, so where a gradient is near zero (attn2.to_k: the text keys barely matter yet) the
    # float reduction-order noise becomes a visible fraction of one update (measured: 1.1e-5 there, < 2e-6 in every
    # other tensor): allow 3 % of one step (lr = 1e-3).
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=0, atol=3e-5, msg=k)
    moved = max((w1[k] - w0).abs().max().item() for k, w0 in _weights(root / "run2" / "checkpoint-000002").items())
    assert moved > 1e-4  # and the weights did move between step 2 and 4

    # Gradient accumulation: 1 process × batch 1 × 2 micro-batches is the same optimisation again.
    acc = Trainer(_one_process(root, "run_acc", batch_size=1, gradient_accumulation_steps=2))
    torch.testing.assert_close(torch.tensor(acc.train()), torch.tensor(losses1), rtol=1e-5, atol=1e-6)


def test_resume_two_process_checkpoint_in_one_process(two_process_run):
    root = two_process_run
    ckpt = root / "run2" / "checkpoint-000002"
    trainer = Trainer(_one_process(root, "run_resumed"), resume=ckpt)
    # 2 ranks × 2 batches of 1 = 4 samples = 2 batches of 2 in one process.
    assert trainer.step == 2 and trainer.epoch == 0 and trainer.batch_in_epoch == 2
    tail = trainer.train()
    torch.testing.assert_close(torch.tensor(tail), torch.tensor(_losses(root / "run2")[2:]), rtol=1e-5, atol=1e-6)
    # A global batch that does not divide the checkpoint's data position is refused with a clear message.
    mid = Trainer(_one_process(root, "run_mid", batch_size=1, steps=1))
    mid.train()
    path = mid.save_checkpoint()
    with pytest.raises(ValueError, match="not a multiple of batch_size × processes = 2"):
        Trainer(_one_process(root, "run_mid2"), resume=path)


def test_fsdp_matches_ddp_and_resumes_across_both(two_process_run):
    """FSDP2-sharded transformer (with gradient checkpointing and a sample video, both collective under sharding):
    the same losses and weights as DDP; its checkpoint resumes unsharded, a DDP checkpoint resumes sharded."""
    root = two_process_run
    out = _train_two_processes(root, "run_fsdp", "--fsdp", "--gradient-checkpointing", "--sample-every", "4",
                               "--sample-steps", "2")
    assert "FSDP-sharded" in out
    fsdp, ddp = root / "run_fsdp", root / "run2"
    torch.testing.assert_close(torch.tensor(_losses(fsdp)), torch.tensor(_losses(ddp)), rtol=1e-5, atol=1e-6)
    w_fsdp, w_ddp = _weights(fsdp / "checkpoint-000004"), _weights(ddp / "checkpoint-000004")
    assert w_fsdp.keys() == w_ddp.keys()
    for k in w_ddp:  # gathered from the shards into the same files as DDP writes (tolerance: see the DDP test)
        torch.testing.assert_close(w_fsdp[k], w_ddp[k], rtol=0, atol=3e-5, msg=k)
    assert (fsdp / "samples" / "step_000004.mp4").stat().st_size > 0  # written once, by the main process

    # The sharded run's checkpoint (name-keyed optimiser state) resumes in one unsharded process …
    tail = Trainer(_one_process(root, "run_fsdp_resumed"), resume=fsdp / "checkpoint-000002").train()
    torch.testing.assert_close(torch.tensor(tail), torch.tensor(_losses(ddp)[2:]), rtol=1e-5, atol=1e-6)
    # … and the DDP run's checkpoint resumes sharded.
    _train_two_processes(root, "run_ddp_to_fsdp", "--fsdp", "--resume", str(ddp / "checkpoint-000002"))
    torch.testing.assert_close(torch.tensor(_losses(root / "run_ddp_to_fsdp")), torch.tensor(_losses(ddp)[2:]),
                               rtol=1e-5, atol=1e-6)


def test_fsdp_bf16_base_weights(two_process_run):
    """The 14B recipe's dtypes under FSDP: bf16 frozen weights sharded in the same units as float32 LoRA tensors,
    bf16 autocast. Not bit-equal to float32, but the same optimisation."""
    root = two_process_run
    _train_two_processes(root, "run_fsdp_bf16", "--fsdp", "--mixed-precision", "bf16", "--base-dtype", "bfloat16",
                         "--steps", "2")
    torch.testing.assert_close(torch.tensor(_losses(root / "run_fsdp_bf16")), torch.tensor(_losses(root / "run2")[:2]),
                               rtol=5e-3, atol=0)  # measured 6e-4


def test_fsdp_gradient_accumulation(two_process_run):
    """2 sharded processes × batch 1 × 2 micro-batches (gradient sync only on the last) ≡ 1 process × batch 4."""
    root = two_process_run
    _train_two_processes(root, "run_fsdp_acc", "--fsdp", "--gradient-accumulation-steps", "2", "--steps", "2")
    one = Trainer(_one_process(root, "run_b4", batch_size=4, steps=2)).train()
    torch.testing.assert_close(torch.tensor(_losses(root / "run_fsdp_acc")), torch.tensor(one), rtol=1e-5, atol=1e-6)


def test_fsdp_refusals():
    with pytest.raises(ValueError, match="fsdp=True supports mixed_precision 'no' or 'bf16'"):
        TrainConfig(fsdp=True, mixed_precision="fp16").validate()
    with pytest.raises(ValueError, match="fsdp_cpu_offload=True needs fsdp=True"):
        TrainConfig(fsdp_cpu_offload=True).validate()
    with pytest.raises(ValueError, match="fsdp_cpu_offload needs CUDA devices"):
        shard_transformer(torch.nn.Module(), torch.device("cpu"), cpu_offload=True)


def test_per_sample_randomness_and_micro_batches():
    a = torch.randn(3, generator=sample_generator(0, 5, 7))
    assert torch.equal(a, torch.randn(3, generator=sample_generator(0, 5, 7)))
    assert not torch.equal(a, torch.randn(3, generator=sample_generator(0, 5, 8)))
    assert not torch.equal(a, torch.randn(3, generator=sample_generator(0, 6, 7)))
    groups = list(micro_batches(iter(range(7)), 3))
    assert groups == [[0, 1, 2], [3, 4, 5]]  # the short tail is dropped
    with pytest.raises(ValueError, match="gradient_accumulation_steps must be >= 1"):
        TrainConfig(gradient_accumulation_steps=0).validate()
