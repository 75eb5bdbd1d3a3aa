"""Numeric command-line arguments are checked when the command line is parsed (dexworld/argtypes.py): argparse's
one-line error naming the argument, exit status 2, before any work."""

from __future__ import annotations

import argparse

import pytest

from dexworld import argtypes as at
from dexworld.cli import build_parser, main

GEN = ["generate", "--image", "ref.png", "--joints", "j.npz", "-o", "out.mp4"]


@pytest.mark.parametrize("argv, flag, expected", [
    (GEN + ["--guidance", "nan"], "--guidance", "finite"),
    (GEN + ["--guidance", "-1"], "--guidance", "in [0, 100]"),
    (GEN + ["--steps", "-3"], "--steps", "in [1, 10000000]"),
    (GEN + ["--height", "100000"], "--height", "in [16, 4096]"),
    (GEN + ["--width", "100"], "--width", "multiple of 16"),
    (GEN + ["--num-frames", "16"], "--num-frames", "4k+1"),
    (GEN + ["--fps", "inf"], "--fps", "finite"),
    (["demo", "--size", "100000"], "--size", "in [16, 4096]"),
    (["demo", "--frames", "16"], "--frames", "4k+1"),
    (["demo", "--steps", "0"], "--steps", "in [1, 10000000]"),
    (["demo", "--guidance", "-0.5"], "--guidance", "in [0, 100]"),
    (["train", "--steps", "-1"], "--steps", "in [0, 10000000]"),
    (["train", "--lr-control", "nan"], "--lr-control", "finite"),
    (["train", "--joint-mask-prob", "1.5"], "--joint-mask-prob", "in [0, 1]"),
    (["train", "--batch-size", "two"], "--batch-size", "an integer"),
    (["synth", "--embodiment", "dex3_right", "--episodes", "0", "--out", "x"], "--episodes", "in [1, "),
    (["synth", "--embodiment", "dex3_right", "--episodes", "1", "--out", "x", "--size", "99999"], "--size",
     "sides between 8 and 4096"),
    (["edit", "--image", "a.png", "--joints", "j.npz", "--port", "70000"], "--port", "in [0, 65535]"),
    (["annotate", "d.json", "-o", "x", "--min-hand-presence", "2"], "--min-hand-presence", "in [0, 1]"),
    (["motion", "pinch", "-o", "p.npz", "--frames", "1"], "--frames", "in [2, 1025]"),
    (["synth", "--embodiment", "dex3_right", "--episodes", "1", "--out", "x", "--frames", "10000000"], "--frames",
     "in [1, 1025]"),
])
def test_bad_numbers_stop_at_parse_time(tmp_path, capsys, monkeypatch, argv, flag, expected):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument {flag}" in err and expected in err, err
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("command", [["train"], ["demo"], ["evaluate", "--video", "v.mp4", "--clip", "c.h5"], GEN])
def test_device_is_checked_against_this_machine(command, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as e:
        main([*command, "--device", "cuda"])
    assert e.value.code == 2
    assert "argument --device: 'cuda': no CUDA GPU is available" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*command, "--device", "toaster"])
    assert "expected a torch device" in capsys.readouterr().err
    args = build_parser().parse_args([*command, "--device", "cpu"])
    assert args.device == "cpu"


def test_type_functions():
    assert at.frames_4k1("17") == 17 and at.side16("128") == 128 and at.probability("0.5") == 0.5
    for fn, text in [(at.guidance, "inf"), (at.positive_float, "0"), (at.nonnegative_int, "-1"), (at.seed, "1.5")]:
        with pytest.raises(argparse.ArgumentTypeError):
            fn(text)


def test_version(capsys):
    from dexworld import __version__

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"dexworld {__version__}"


def test_train_help_states_the_vae_steps_default(capsys):
    from worldmodel.wan.presets import TRAIN_DEFAULTS

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"tiny-sim default {TRAIN_DEFAULTS['tiny-sim']['vae']['steps']};" in text
