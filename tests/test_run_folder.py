"""A training run's folder: a new run never lands on an old one unasked, --overwrite deletes only the run's own
files, and a resume clears what a killed checkpoint save left behind."""

from __future__ import annotations

import json

from _wm_helpers import CONTROL, SMALL_TINY, make_frames, make_joints

from dexworld.cli import main
from embodiments.io_utils import clean_atomic_leftovers
from worldmodel.training.run_folder import clear_run


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _fake_run(out):
    (out / "checkpoint-000002").mkdir(parents=True)
    (out / "checkpoint-000002" / "dexworld_checkpoint.json").write_text("{}")
    (out / "latest").write_text("checkpoint-000002")
    (out / "loss.jsonl").write_text('{"step": 1}\n{"step": 2}\n')
    (out / "samples").mkdir()
    (out / "samples" / "step_000002.mp4").write_bytes(b"v")
    (out / "base").mkdir()
    (out / "base" / "dexworld_preset.json").write_text("{}")
    (out / "vae_loss.jsonl").write_text("{}\n")
    # things the run did not write
    (out / "notes.txt").write_text("mine")
    (out / "checkpoint-notes").mkdir()
    (out / "checkpoint-notes" / "a.txt").write_text("mine too")
    (out / "samples" / "poster.png").write_bytes(b"p")


def test_existing_run_is_refused_with_both_ways_forward(tmp_path, capsys):
    out = tmp_path / "run"
    _fake_run(out)
    before = _snapshot(out)
    data = tmp_path / "data"
    data.mkdir()
    assert main(["train", "--data", str(data), "--out", str(out), "--steps", "1"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert f"--out {out} already holds a training run" in err and "--resume" in err and "new --out" in err \
        and "--overwrite" in err
    assert main(["train", "--data", str(data), "--out", str(out), "--resume", "--overwrite"]) == 1
    assert "give one of them" in capsys.readouterr().err
    assert main(["train", "--data", str(data), "--out", str(out), "--resume", "--init", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--init starts a new run" in err and "give one" in err
    assert _snapshot(out) == before


def test_clear_run_deletes_only_what_a_run_writes(tmp_path):
    out = tmp_path / "run"
    _fake_run(out)
    (out / ".checkpoint-000004.tmp-abc").mkdir()
    (out / ".latest.xyz").write_text("checkpoint-000004")
    clear_run(out)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == [
        "checkpoint-notes", "checkpoint-notes/a.txt", "notes.txt", "samples", "samples/poster.png"]


def test_leftovers_of_a_killed_save_are_removed_and_a_set_aside_checkpoint_put_back(tmp_path):
    (tmp_path / ".checkpoint-000004.tmp-abc" / "control").mkdir(parents=True)  # killed while writing
    (tmp_path / ".checkpoint-000002.old-def").mkdir()  # killed between the two renames of a re-save
    (tmp_path / ".checkpoint-000002.old-def" / "x").mkdir()
    (tmp_path / ".checkpoint-000002.old-def" / "x" / "dexworld_checkpoint.json").write_text('{"step": 2}')
    (tmp_path / ".latest.q1w2").write_text("checkpoint-000004")
    (tmp_path / ".notes.txt.bak").write_text("not ours")
    clean_atomic_leftovers(tmp_path, ["checkpoint-*", "latest"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [".notes.txt.bak", "checkpoint-000002"]
    assert (tmp_path / "checkpoint-000002" / "dexworld_checkpoint.json").read_text() == '{"step": 2}'


def test_overwrite_and_resume_end_to_end(tmp_path, capsys):
    from embodiments.clip import write_clip

    data = tmp_path / "data"
    write_clip(data / "c0.h5", make_frames(5), make_joints(5), prompt="a hand")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"tiny": SMALL_TINY, "control": CONTROL, "lora_rank": 4}))
    out = tmp_path / "run"
    args = ["train", "--preset", "tiny", "--data", str(data), "--out", str(out), "--config", str(cfg),
            "--no-progress", "--sample-every", "0"]
    assert main([*args, "--steps", "2", "--checkpoint-every", "1"]) == 0
    (out / "notes.txt").write_text("mine")
    # a save killed mid-way left its temporary folder; the resume removes it
    (out / ".checkpoint-000003.tmp-k1ll").mkdir()
    (out / ".checkpoint-000003.tmp-k1ll" / "training_state.pt").write_bytes(b"half")
    assert main(["train", "--out", str(out), "--resume", "--steps", "3", "--no-progress"]) == 0
    assert not list(out.glob(".checkpoint-*")) and (out / "latest").read_text() == "checkpoint-000003"
    assert main([*args, "--steps", "1"]) == 1 and "already holds a training run" in capsys.readouterr().err
    assert main([*args, "--steps", "1", "--overwrite"]) == 0
    assert [json.loads(x)["step"] for x in (out / "loss.jsonl").read_text().splitlines()] == [1]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["base", "checkpoint-000001"]
    assert (out / "notes.txt").read_text() == "mine"


def test_a_checkpoint_save_on_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch):
    """torch.save reports a full disk as a RuntimeError (PytorchStreamWriter), not an OSError: the command still ends
    with one line naming the checkpoint, no temporary folder is left and the previous checkpoint is intact."""
    import torch

    from embodiments.clip import write_clip

    data = tmp_path / "data"
    write_clip(data / "c0.h5", make_frames(5), make_joints(5), prompt="a hand")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"tiny": SMALL_TINY, "control": CONTROL, "lora_rank": 4}))
    out = tmp_path / "run"
    args = ["train", "--preset", "tiny", "--data", str(data), "--out", str(out), "--config", str(cfg),
            "--no-progress", "--sample-every", "0", "--checkpoint-every", "1"]
    assert main([*args, "--steps", "1"]) == 0
    before = _snapshot(out / "checkpoint-000001")

    def full_disk(*a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 320 vs 0\n"
                           "PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", full_disk)
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--steps", "2", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()  # --no-progress: no library progress bars either
    assert len(err) == 1 and err[0].startswith("dexworld train: error:")
    assert f"cannot write {out / 'checkpoint-000002'}" in err[0] and "write failed" in err[0]
    assert not (out / "checkpoint-000002").exists() and not list(out.glob(".checkpoint-*"))
    assert _snapshot(out / "checkpoint-000001") == before and (out / "latest").read_text() == "checkpoint-000001"
