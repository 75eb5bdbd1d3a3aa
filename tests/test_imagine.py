"""``dexworld imagine``: planning and edits, the 12-episode acceptance run, SIGKILL + rerun, --min-quality, shard merge
resume, 2-process accelerate and a local Ray cluster against one process, and a lerobot policy training on the output.

Runs use the shipped tiny-sim-bimanual model (the source is two-handed) at 64², 5 frames, 2 steps on a 3-episode Dex3
pair source dataset (32×32).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _imagine_helpers import FAST, make_source, source_episode

from dexworld.cli import main
from dexworld.imagine.work import WorkItem, apply_edit, draw_edit, plan, shard
from embodiments.layout import SLOT_NAMES, slot_index
from sim_bridge import lerobot_io as lio

torch.set_num_threads(1)
pytestmark = pytest.mark.xdist_group("imagine")
ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--seeds", "2", "--edits", "1", *FAST]
EXPECTED = {f"src#{e}|{v}|seed{s}" for e in range(3) for v in ("orig", "edit0") for s in (0, 1)}


def _keys(root: Path) -> list[str]:
    return [e["source"] for e in lio.read_sidecar(root)["episodes"]]


def _frames_by_key(root: Path) -> dict[str, np.ndarray]:
    """Decoded imagined video of every episode, by work-item key (through LeRobotDataset)."""
    ds = lio.load_dataset(f"local/{root.name}", root)
    out = {}
    for e in lio.read_sidecar(root)["episodes"]:
        meta = ds.meta.episodes[e["episode_index"]]
        idx = range(int(meta["dataset_from_index"]), int(meta["dataset_to_index"]))
        out[e["source"]] = np.stack([ds[i]["observation.images.ego"].numpy() for i in idx])
    return out


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imagine") / "src"
    make_source(root)
    return root


@pytest.fixture(scope="module")
def reference(source) -> Path:
    """One process, batches of 4: the acceptance run."""
    out = source.parent / "one"
    assert main(["imagine", str(source), "-o", str(out), "-b", "4", *ARGS]) == 0
    return out


def test_plan_keys_shards_and_edits():
    items = plan(["a", "b", "c"], seeds=2, edits=1, cross_references=1)
    assert len(items) == 18 and len({it.key for it in items}) == 18
    assert WorkItem("c", 2, 1, reference=0).key in {it.key for it in items}  # c's reference is the next (a)
    parts = [shard(items, r, 3) for r in range(3)]
    assert sorted(it.key for p in parts for it in p) == sorted(it.key for it in items)
    with pytest.raises(ValueError, match="--seeds"):
        plan(["a"], seeds=0)
    joints = source_episode(0).joints
    kinds = set()
    for k in range(12):
        params = draw_edit(joints, 0, k, max_offset=0.03)
        assert params == draw_edit(joints, 0, k, max_offset=0.03)  # deterministic, recorded as drawn
        assert 0.015 - 1e-6 <= np.linalg.norm(params["offset"]) <= 0.03 + 1e-6
        kinds.add(params["kind"])
        moved = apply_edit(joints, params)
        if params["kind"] == "hand":
            ids = set(range(21)) if params["joint_ids"] == ["left"] else set(range(21, 42))
        else:
            ids = {slot_index(n) for n in params["joint_ids"]}
        other = [i for i in range(42) if i not in ids]
        np.testing.assert_array_equal(moved.positions[:, other], joints.positions[:, other])
        key = params["frames"]
        sel = [i for i in sorted(ids) if joints.valid[key, i]]
        np.testing.assert_allclose(moved.positions[key, sel] - joints.positions[key, sel],
                                   np.broadcast_to(params["offset"], (len(sel), 3)), atol=1e-6)
        assert all(n in SLOT_NAMES or n in ("left", "right") for n in params["joint_ids"])
    assert kinds == {"joint", "finger", "hand"}


def test_acceptance_twelve_episodes_with_provenance_and_quality(source, reference):
    keys = _keys(reference)
    assert sorted(keys) == sorted(EXPECTED)
    ds = lio.load_dataset("local/one", reference)
    assert ds.num_episodes == 12 and len(ds) == 60
    feats = ds.meta.features
    assert tuple(feats["observation.images.ego"]["shape"]) == (64, 64, 3)
    assert feats["observation.state"]["names"][0] == "kLeftHandThumb0"
    src = lio.read_sidecar(source)
    src_rows = lio.load_dataset("local/src", source).hf_dataset.with_format("numpy")
    hf = ds.hf_dataset.with_format("numpy")
    for e in lio.read_sidecar(reference)["episodes"]:
        prov = e["provenance"]
        s = prov["source_episode"]
        assert prov["source_dataset"] == str(source.resolve()) and e["source"].startswith(f"src#{s}|")
        assert prov["seed"] == int(e["source"][-1]) and prov["embodiment"] == "dex3_left+dex3_right"
        assert prov["checkpoint"] == "shipped:tiny-sim-bimanual"  # a pair: the shipped model that saw pairs
        # two hands in each frame: the shipped probe, trained on one-hand frames, would confuse them, so it scores none
        assert e["quality"] is None and e["probe"] == {}
        meta = ds.meta.episodes[e["episode_index"]]
        rows = hf[int(meta["dataset_from_index"]):int(meta["dataset_to_index"])]
        np.testing.assert_array_equal(rows["observation.state"], src_rows[5 * s:5 * s + 5]["observation.state"])
        src_joints = src_rows[5 * s:5 * s + 5]["observation.hand_joints"]
        np.testing.assert_allclose(rows["observation.intrinsics"][0][0, 0], 2 * 30.0, rtol=1e-6)  # 32² → 64²
        if "|orig|" in e["source"]:
            assert prov["edit"] is None
            np.testing.assert_allclose(rows["observation.hand_joints"], src_joints, atol=1e-5)  # FK of the state
        else:
            assert prov["edit"]["kind"] in ("joint", "finger", "hand")
            assert np.abs(rows["observation.hand_joints"] - src_joints).max() > 1e-3
    assert src["episodes"][0]["source"] == "src0"
    frames = _frames_by_key(reference)
    assert np.abs(frames["src#0|orig|seed0"].astype(float) - frames["src#0|orig|seed1"]).mean() > 0.01  # seeds differ


def test_sigkill_mid_run_then_rerun_gives_the_same_twelve(source, reference, tmp_path):
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "dexworld.cli", "imagine", str(source), "-o", str(out), "-b", "1", *ARGS]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        side = out / lio.SIDECAR
        if side.exists() and len(json.loads(side.read_text())["episodes"]) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = _keys(out) if (out / "meta" / "info.json").exists() else []
    lio.recover(out)
    assert 3 <= len(partial) < 12 and len(set(partial)) == len(partial)
    assert main(["imagine", str(source), "-o", str(out), "-b", "3", *ARGS]) == 0
    keys = _keys(out)
    assert len(keys) == 12 and set(keys) == EXPECTED
    assert lio.load_dataset("local/killed", out).num_episodes == 12
    a, b = _frames_by_key(out), _frames_by_key(reference)
    for k in EXPECTED:
        assert np.abs(a[k].astype(float) - b[k]).mean() < 0.005  # same seeds → same video (batching round-off)


def test_min_quality_drops_low_scores(source, tmp_path, capsys, monkeypatch):
    from dexworld.imagine import runner

    real = runner.quality

    def brightness(probe, frames, joints, hands):  # a score the two seeds surely differ in (the tiny model's
        _, per = real(probe, frames, joints, hands)  # PCK can be 0 for both)
        return float(np.asarray(frames, np.float64).mean() / 255.0), per

    monkeypatch.setattr(runner, "quality", brightness)
    scored = tmp_path / "scored"
    assert main(["imagine", str(source), "-o", str(scored), "--episodes", "0", "--seeds", "2", *FAST]) == 0
    scores = {e["source"]: e["quality"] for e in lio.read_sidecar(scored)["episodes"]}
    ep0 = {k: v for k, v in scores.items() if k.startswith("src#0|orig")}
    lo, hi = sorted(ep0.values())
    assert lo < hi, "the two seeds must score differently for this test"
    capsys.readouterr()
    out = tmp_path / "filtered"
    assert main(["imagine", str(source), "-o", str(out), "--episodes", "0", "--seeds", "2", "--min-quality",
                 str((lo + hi) / 2), *FAST]) == 0
    assert _keys(out) == [max(ep0, key=ep0.get)]
    assert "dropped 1" in capsys.readouterr().out
    monkeypatch.setattr(runner, "quality", real)  # the real score: none for two hands with a one-hand probe
    assert main(["imagine", str(source), "-o", str(tmp_path / "none"), "--episodes", "0", "--min-quality", "0.5",
                 *FAST]) == 1
    assert "cannot score dex3_left+dex3_right in one frame" in capsys.readouterr().err


def test_clip_folder_source_with_cross_references(tmp_path):
    """Training clips carrying joint states as the source; the cross-reference variant takes the next clip's frame."""
    from sim_bridge.clips import write_episode_clips
    from sim_bridge.lerobot_io import StateLayout

    eps = [source_episode(s) for s in range(2)]
    for i, ep in enumerate(eps):
        write_episode_clips(ep, tmp_path / "clips", f"c{i}")
    out = tmp_path / "from_clips"
    assert main(["imagine", str(tmp_path / "clips"), "-o", str(out), "--cross-references", "1", *FAST]) == 0
    side = lio.read_sidecar(out)
    assert sorted(_keys(out)) == sorted(f"clips#{e}|{v}|seed0" for e in (0, 1) for v in ("orig", f"ref{1 - e}"))
    hf = lio.load_dataset("local/from_clips", out).hf_dataset.with_format("numpy")
    for e in side["episodes"]:
        s = e["provenance"]["source_episode"]
        assert e["provenance"]["reference_episode"] == (None if "|orig|" in e["source"] else 1 - s)
        rows = hf[5 * e["episode_index"]:5 * e["episode_index"] + 5]
        np.testing.assert_allclose(rows["observation.state"], StateLayout(eps[s].hands).encode(eps[s].q), atol=1e-6)
    frames = _frames_by_key(out)  # the first frame follows the reference image (colours shift by 40 per episode)
    assert np.abs(frames["clips#0|ref1|seed0"][0] - frames["clips#1|orig|seed0"][0]).mean() < \
        np.abs(frames["clips#0|ref1|seed0"][0] - frames["clips#0|orig|seed0"][0]).mean()


def test_human_motion_retargeted_to_a_robot_hand(tmp_path):
    """A built-in human motion, retargeted to Inspire: the state is the retargeted q under Unitree's names."""
    import embodiments
    import retarget
    from sim_bridge.unitree import unitree_layout

    out = tmp_path / "human"
    assert main(["imagine", "motion:pinch", "--to", "inspire_right", "-o", str(out), *FAST]) == 0
    (e,) = lio.read_sidecar(out)["episodes"]
    assert e["source"] == "pinch>inspire_right#0|orig|seed0" and e["provenance"]["source_dataset"] == "builtin:pinch"
    assert e["provenance"]["embodiment"] == "inspire_right" and e["quality"] is not None
    ds = lio.load_dataset("local/human", out)
    assert ds.meta.features["observation.state"]["names"] == list(unitree_layout("inspire_right").names)
    human = embodiments.human_motion("pinch", side="right", fps=16.0, frames=5)
    q = retarget.Retargeter("mano_right", "inspire_right", "dexpilot").retarget(human)
    state = ds.hf_dataset.with_format("numpy")[:]["observation.state"]
    np.testing.assert_allclose(state, unitree_layout("inspire_right").to_unitree(q), atol=1e-4)


def test_embodiment_swap_dex3_to_inspire(source, tmp_path):
    """--swap-to inspire: each Dex3 hand retargeted to the Inspire hand of its side through the sparse joints."""
    from sim_bridge.unitree import unitree_layout

    out = tmp_path / "swapped"
    assert main(["imagine", str(source), "-o", str(out), "--episodes", "0", "--swap-to", "inspire", *FAST]) == 0
    side = lio.read_sidecar(out)
    (e,) = side["episodes"]
    assert side["hands"] == ["inspire_left", "inspire_right"]
    assert e["provenance"]["swapped_from"] == "dex3_left+dex3_right"
    assert e["provenance"]["embodiment"] == "inspire_left+inspire_right"
    ds = lio.load_dataset("local/swapped", out)
    names = ds.meta.features["observation.state"]["names"]
    assert names[:6] == list(unitree_layout("inspire_left").names)
    rows = ds.hf_dataset.with_format("numpy")[:]
    src = source_episode(0).joints
    new = rows["observation.hand_joints"]
    both = rows["observation.hand_joints_valid"] & src.valid
    gap = np.linalg.norm(new - src.positions, axis=-1)[both]
    assert both.sum() > 20 and gap.mean() < 0.03 and gap.max() > 1e-3  # same place, another hand


def test_bad_arguments_are_one_line_errors(source, tmp_path, capsys):
    assert main(["imagine", str(tmp_path / "missing"), "-o", str(tmp_path / "o")]) == 1
    assert main(["imagine", str(source), "-o", str(tmp_path / "o"), "--seeds", "0"]) == 1
    assert main(["imagine", str(source), "-o", str(tmp_path / "o"), "--num-frames", "4"]) == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert len(err) == 3 and "SOURCE" in err[0] and "--seeds" in err[1] and "--num-frames" in err[2]
    assert not (tmp_path / "o").exists()


def test_merge_is_resumable(source, reference, tmp_path, monkeypatch):
    """Two shards written in this process; a merge killed after the swap (shards still there) and one killed
    before it both end, after a rerun, with each episode exactly once."""
    from dexworld.imagine.runner import ImagineConfig, load_pipeline, run_shard
    from dexworld.imagine.shards import done_keys, merge, shard_root, shards_dir

    out = tmp_path / "merged"
    cfg = ImagineConfig(source=source, out=out, seeds=2, episodes=[0, 1], height=64, width=64, num_frames=5,
                        steps=2, progress=False, device="cpu")
    pipe = load_pipeline(cfg, ["dex3_left", "dex3_right"])
    for r in range(2):
        run_shard(cfg, r, 2, pipe=pipe)
    # A rank's resume check reads its own shard and leaves the others alone: rank 1 may be mid-commit (the race
    # that made the Ray run flaky: rank 0 deleted rank 1's staging folder under it).
    busy = lio._aux(shard_root(out, 1), "staging")
    busy.mkdir()
    (busy / "being-written").write_text("")
    own = {e["source"] for e in lio.read_sidecar(shard_root(out, 0))["episodes"]}
    assert done_keys(out, 0) == own and len(own) == 2 and (busy / "being-written").exists()
    with lio._lock(shard_root(out, 0)), pytest.raises(lio.DatasetBusy):  # an earlier attempt of rank 0 still runs
        done_keys(out, 0)
    shutil.rmtree(busy)
    # An aggregate that lost a file is refused before the swap: no output, both shards kept.
    import lerobot.datasets.aggregate as agg

    real = agg.aggregate_datasets

    def lossy(*args, aggr_root, **kwargs):
        real(*args, aggr_root=aggr_root, **kwargs)
        next((aggr_root / "data").rglob("*.parquet")).unlink()

    monkeypatch.setattr(agg, "aggregate_datasets", lossy)
    with pytest.raises(ValueError, match=r"expected 4 and 20\), missing data/.*untouched"):
        merge(out, cfg.repo)
    monkeypatch.setattr(agg, "aggregate_datasets", real)
    assert not (out / "meta").exists() and all((shard_root(out, r) / "meta" / "info.json").exists() for r in (0, 1))
    monkeypatch.setenv(lio.FAILPOINT_ENV, "merge.before_swap:1:raise")
    with pytest.raises(RuntimeError):
        merge(out, cfg.repo)
    assert not (out / "meta").exists() and len(list(shards_dir(out).iterdir())) >= 2
    lio._failpoint.counts.clear()
    monkeypatch.setenv(lio.FAILPOINT_ENV, "merge.before_cleanup:1:raise")
    with pytest.raises(RuntimeError):
        merge(out, cfg.repo)
    assert len(_keys(out)) == 4  # swapped in, shards not yet deleted
    monkeypatch.delenv(lio.FAILPOINT_ENV)
    assert merge(out, cfg.repo) == 0
    assert sorted(_keys(out)) == sorted(f"src#{e}|orig|seed{s}" for e in (0, 1) for s in (0, 1))
    assert not shards_dir(out).exists()
    assert lio.load_dataset("local/merged", out).num_episodes == 4
    # more seeds later: only the new items are sampled, appended through a fresh shard and merge
    cfg.seeds = 3
    for r in range(2):
        run_shard(cfg, r, 2, pipe=pipe)
    assert merge(out, cfg.repo) == 2 and len(set(_keys(out))) == 6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_accelerate_two_processes_match_one_process(source, reference, tmp_path):
    """The real command under torchrun (what `accelerate launch` runs), accelerate picking up gloo on CPU."""
    out = tmp_path / "acc"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "dexworld.cli", "imagine", str(source), "-o", str(out), "-b", "2",
           *ARGS]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "wrote 12" in proc.stdout and "(2 shard(s), 12 merged)" in proc.stdout
    _same_episodes(out, reference)


def _same_episodes(out: Path, reference: Path) -> None:
    keys = _keys(out)
    assert len(keys) == 12 and set(keys) == EXPECTED
    a, b = _frames_by_key(out), _frames_by_key(reference)
    for k in EXPECTED:
        assert np.abs(a[k].astype(float) - b[k]).mean() < 0.005
    qa = {e["source"]: e["provenance"]["edit"] for e in lio.read_sidecar(out)["episodes"]}
    qb = {e["source"]: e["provenance"]["edit"] for e in lio.read_sidecar(reference)["episodes"]}
    assert qa == qb


def test_ray_local_cluster_matches_one_process(source, reference, tmp_path):
    ray = pytest.importorskip("ray")
    ray.shutdown()  # a cluster another test of this process left running
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}})
    try:
        out = tmp_path / "ray"
        assert main(["imagine", str(source), "-o", str(out), "--backend", "ray", "--shards", "2", "-b", "2",
                     *ARGS]) == 0
    finally:
        ray.shutdown()
    _same_episodes(out, reference)


def test_act_policy_trains_on_the_imagined_dataset(reference):
    """lerobot's ACT (tiny sizes) loads the imagined dataset and overfits one batch in a few steps."""
    from lerobot.configs.types import FeatureType
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.utils.feature_utils import dataset_to_policy_features

    meta = LeRobotDataset(repo_id="local/one", root=reference, video_backend="pyav").meta
    feats = dataset_to_policy_features(meta.features)
    inputs = {k: f for k, f in feats.items() if k in ("observation.images.ego", "observation.state")}
    outputs = {k: f for k, f in feats.items() if f.type is FeatureType.ACTION}
    cfg = ACTConfig(input_features=inputs, output_features=outputs, chunk_size=2, n_action_steps=2, dim_model=32,
                    n_heads=2, dim_feedforward=64, n_encoder_layers=1, n_decoder_layers=1, n_vae_encoder_layers=1,
                    latent_dim=8, pretrained_backbone_weights=None, device="cpu")
    ds = LeRobotDataset(repo_id="local/one", root=reference, video_backend="pyav",
                        delta_timestamps={"action": [i / meta.fps for i in cfg.action_delta_indices]})
    policy = ACTPolicy(cfg)
    pre, _ = make_pre_post_processors(cfg, dataset_stats=meta.stats)
    batch = pre(next(iter(torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True,
                                                      generator=torch.Generator().manual_seed(0)))))
    assert batch["observation.images.ego"].shape[-2:] == (64, 64) and batch["action"].shape[1:] == (2, 14)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    policy.train()
    losses = []
    for _ in range(8):
        loss, _ = policy.forward(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0]
