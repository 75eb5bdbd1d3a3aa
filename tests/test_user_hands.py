"""User hands: reserved built-in names, --hand-spec / DEXWORLD_HANDS on the CLI, a spec over a renamed MJCF."""

from __future__ import annotations

import numpy as np
import pytest
from _toy_hand import JOINT_MAP, MIMIC, write_toy_hand

import embodiments
from dexworld.cli import build_parser, main

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_builtin_names_are_reserved_whatever_the_order(tmp_path):
    """A user spec named like a built-in hand is refused, whether or not the built-ins were loaded before."""
    from embodiments import registry

    spec = write_toy_hand(tmp_path, name="inspire_right")
    saved = dict(registry._factories), set(registry._builtins), registry._builtins_loaded
    registry._factories.clear()
    registry._builtins.clear()
    registry._builtins_loaded = False  # as in a fresh process where nothing asked for a hand yet
    try:
        with pytest.raises(ValueError, match="'inspire_right' is reserved for a built-in hand"):
            embodiments.register(spec)
        with pytest.raises(ValueError, match="built-in"):
            embodiments.register(embodiments.get("dex3_right"), name="dex3_right", overwrite=True)
        assert embodiments.get("inspire_right").dof == 6  # still Unitree's Inspire, not the 4-joint toy
    finally:
        registry._factories.clear()
        registry._factories.update(saved[0])
        registry._builtins.clear()
        registry._builtins.update(saved[1])
        registry._builtins_loaded = saved[2]


def _every_leaf(parser, path=()):
    import argparse

    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from _every_leaf(sub, path + (name,))


def test_every_command_that_takes_a_hand_has_hand_spec():
    leaves = dict(_every_leaf(build_parser()))
    takes_hand = {p for p, parser in leaves.items() if p[0] == "embodiments"
                  or any(a.dest in ("embodiment", "target", "source") for a in parser._actions)}
    assert {("retarget",), ("simulate",), ("synth",), ("demo",), ("embodiments", "show"), ("embodiments", "list"),
            ("import-lerobot",), ("train-probe",)} <= takes_hand
    for p in takes_hand:
        assert any("--hand-spec" in a.option_strings for a in leaves[p]._actions), p


def test_cli_sees_a_user_hand_from_hand_spec_and_from_the_env_folder(tmp_path, monkeypatch, capsys):
    spec = write_toy_hand(tmp_path / "a", name="toy_cli_a")
    monkeypatch.delenv("DEXWORLD_HANDS", raising=False)
    assert main(["embodiments", "show", "toy_cli_a"]) == 1
    assert "unknown embodiment 'toy_cli_a'" in capsys.readouterr().err
    assert main(["embodiments", "show", "toy_cli_a", "--hand-spec", str(spec)]) == 0
    assert "index_proximal_joint" in capsys.readouterr().out
    write_toy_hand(tmp_path / "folder", name="toy_cli_b")
    monkeypatch.setenv("DEXWORLD_HANDS", str(tmp_path / "folder"))
    assert main(["embodiments", "show", "toy_cli_b"]) == 0
    assert "thumb_pitch_joint" in capsys.readouterr().out


@pytest.mark.parametrize("env, spec, match", [
    ("{tmp}/nowhere", None, "DEXWORLD_HANDS: .*nowhere is not a folder"),
    ("", "{tmp}/missing.yaml", "--hand-spec: no hand spec file at .*missing.yaml"),
    ("", "{builtin}", "hand spec .*inspire_right.yaml: embodiment name 'inspire_right' is reserved for a built-in"),
])
def test_cli_user_hand_errors_are_one_line(tmp_path, monkeypatch, capsys, env, spec, match):
    builtin = write_toy_hand(tmp_path / "b", name="inspire_right")
    monkeypatch.setenv("DEXWORLD_HANDS", env.format(tmp=tmp_path))
    argv = ["embodiments", "list"] + (["--hand-spec", spec.format(tmp=tmp_path, builtin=builtin)] if spec else [])
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert __import__("re").search(match, err), err


def test_spec_over_renamed_mjcf_maps_names_and_checks_them(tmp_path):
    hand = embodiments.get(embodiments.register(write_toy_hand(tmp_path, name="toy_names"), overwrite=True))
    import mujoco

    model = mujoco.MjModel.from_xml_string(hand.mjcf_xml)
    names = {model.joint(i).name for i in range(model.njnt)}
    assert set(JOINT_MAP) <= names and not names & set(JOINT_MAP.values())
    assert model.actuator("ff_act").trnid[0] == model.joint("index_proximal_joint").id  # references follow
    assert model.sensor("ff_pip_pos").objid[0] == model.joint("index_intermediate_joint").id
    bad = write_toy_hand(tmp_path / "bad", name="toy_bad", joint_map={**JOINT_MAP, "thumb_yaw_joint": "th_spin"})
    with pytest.raises(ValueError, match="'th_spin', which toy_right.xml does not have"):
        embodiments.register(bad)


def test_renamed_uncoupled_mjcf_simulates_with_the_urdf_coupling(tmp_path):
    """Physics rollout of the third-party model: driven by the URDF's joint names, and its uncoupled index
    intermediate joint follows the URDF's mimic (1.3 x proximal) because the scene adds the coupling."""
    from sim_bridge.motion import hand_axes, wrist_pose
    from sim_bridge.rollout import rollout

    hand = embodiments.get(embodiments.register(write_toy_hand(tmp_path, name="toy_sim"), overwrite=True))
    T = 16
    q = np.zeros((T, hand.dof))
    q[:, hand.joint_names.index("index_proximal_joint")] = np.minimum(np.linspace(0.0, 1.6, T), 0.8)
    q[:, hand.joint_names.index("thumb_pitch_joint")] = 0.5
    wrist = np.repeat(wrist_pose(hand_axes(hand), [0.0, 0.14, 0.12])[None], T, 0)
    r = rollout(hand, q, wrist, mode="physics", size=(32, 32), fps=16.0)
    assert r.stable
    scene_joint = {n: i for i, n in enumerate(hand.joint_names)}
    prox = r.q[:, scene_joint["index_proximal_joint"]]
    assert 0.6 < prox[-1] <= 0.8 + 1e-3  # the servo drives the renamed joint towards the command
    from sim_bridge.scene import build_scene

    scene = build_scene(hand)
    adr = scene.model.jnt_qposadr[scene.model.joint(scene.hands[0].prefix + "index_intermediate_joint").id]
    np.testing.assert_allclose(r.qpos[:, adr], MIMIC * prox, atol=0.03)  # uncoupled in the MJCF, coupled here


def test_cli_simulate_a_user_hand(tmp_path, capsys):
    spec = write_toy_hand(tmp_path, name="toy_cli_sim")
    traj = tmp_path / "q.npy"
    np.save(traj, np.linspace(0.0, 0.6, 3)[:, None] * np.ones((1, 4)))
    out = tmp_path / "toy.gif"
    assert main(["simulate", str(traj), "--embodiment", "toy_cli_sim", "--hand-spec", str(spec), "--out", str(out),
                 "--size", "32"]) == 0, capsys.readouterr().err
    assert out.stat().st_size > 0
