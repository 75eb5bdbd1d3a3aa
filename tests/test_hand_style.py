"""The detailed hand style: per-link geometry with the real link lengths and the real hands' colours, an option
beside the simple style (the default, unchanged)."""

from __future__ import annotations

import numpy as np
import pytest

import embodiments
from embodiments.layout import FINGERTIPS, side_offset
from sim_bridge import SceneConfig, build_scene, hand_axes, rollout, wrist_pose
from sim_bridge.scene import LABEL_HAND


def _scene(name: str, style: str):
    return build_scene(name, SceneConfig(randomize=False, hand_style=style, num_objects=(0, 0)), seed=0)


def _capsule_length(scene, geom_name: str) -> float:
    m = scene.model
    g = m.geom(geom_name)
    return 2 * float(g.size[1])  # MuJoCo keeps a capsule's half length in size[1]


@pytest.mark.parametrize("name, link, length", [
    # Published joint-to-joint and joint-to-tip offsets (Unitree's Dex3-1 URDF: proximal 45.8 mm, distal to the
    # fingertip 50 mm; Inspire RH56: proximal → intermediate (-2.42, 32.04, -1) mm, middle intermediate → tip
    # (-5, 45, -4) mm).
    ("dex3_right", "right_hand_index_0_link", 0.0458),
    ("dex3_right", "right_hand_index_1_link", 0.05),
    ("inspire_right", "R_middle_proximal", float(np.linalg.norm([-0.0024229, 0.032041, -0.001]))),
    ("inspire_right", "R_middle_intermediate", float(np.linalg.norm([-0.005, 0.045, -0.004]))),
])
def test_each_phalanx_is_its_own_capsule_of_the_real_length(name, link, length):
    scene = _scene(name, "detailed")
    assert _capsule_length(scene, f"hand/{link}_phalanx") == pytest.approx(length, abs=1e-6)


def _hand_pixels(name: str, style: str):
    """Frame, hand mask and fingertip pixels of an open hand, palm down under the head camera."""
    emb = embodiments.get(name)
    ax = hand_axes(emb)
    scene = _scene(name, style)
    r = rollout(emb, ax.open_q[None], wrist_pose(ax, [0.03, 0.14, 0.1], roll=0.3)[None], scene=scene,
                size=(128, 128), segmentation=True)
    hand = r.geom_labels[np.maximum(r.segmentation[0], 0)] == LABEL_HAND
    uvd, ok = r.joints.project()
    tips = [side_offset(emb.side) + i for i in FINGERTIPS if ok[0, side_offset(emb.side) + i]]
    return r.frames[0].astype(float), hand & (r.segmentation[0] >= 0), np.floor(uvd[0, tips, :2]).astype(int)


def test_dex3_is_dark_and_inspire_light_with_black_fingertips():
    luminance = {}
    for name in ("dex3_right", "inspire_right"):
        for style in ("simple", "detailed"):
            frame, hand, tips = _hand_pixels(name, style)
            luminance[name, style] = frame[hand].mean()
            if name == "inspire_right":
                tip_lum = np.array([frame[y, x].mean() for x, y in tips])
                assert len(tips) >= 4
                if style == "detailed":
                    assert (tip_lum < 70).mean() >= 0.75  # black fingertip pads mark where each finger ends
                else:
                    assert (tip_lum > 120).all()  # the simple hand is white to its tips
    assert luminance["dex3_right", "detailed"] < 80 < luminance["dex3_right", "simple"]  # dark grey anodised
    assert luminance["inspire_right", "detailed"] > 110  # light aluminium grey


def test_simple_is_the_default_and_keeps_the_urdf_primitives():
    assert SceneConfig().hand_style == "simple"
    m = _scene("dex3_right", "simple").model
    palm = m.body("hand/right_hand_palm_link").id
    sizes = {tuple(np.round(2 * m.geom_size[g], 4)) for g in range(m.ngeom) if m.geom_bodyid[g] == palm}
    assert sizes == {(0.085, 0.032, 0.084)}  # the URDF's palm box (visual and collision)
    with pytest.raises(ValueError, match="hand_style"):
        SceneConfig(hand_style="fancy")


def test_auto_is_detailed_where_a_hand_has_a_look_and_simple_elsewhere(monkeypatch):
    import sim_bridge.scene as scene_mod

    def geoms(scene):
        m = scene.model
        return [(m.geom(g).name, tuple(np.round(m.geom_size[g], 5))) for g in range(m.ngeom)]

    detailed, simple = geoms(_scene("dex3_right", "detailed")), geoms(_scene("dex3_right", "simple"))
    assert detailed != simple
    assert geoms(_scene("dex3_right", "auto")) == detailed
    monkeypatch.setattr(scene_mod, "look_for", lambda name, side: None)  # as for a user's own hand
    assert geoms(_scene("dex3_right", "auto")) == simple


def test_detailed_hands_simulate_and_fingertips_land_on_their_pads():
    emb = embodiments.get("inspire_right")
    ax = hand_axes(emb)
    T = 6
    q = ax.open_q + np.linspace(0, 0.6, T)[:, None] * (ax.closed_q - ax.open_q)
    w = np.repeat(wrist_pose(ax, [0.03, 0.14, 0.1])[None], T, 0)
    scene = _scene("inspire_right", "detailed")
    r = rollout(emb, q, w, scene=scene, mode="physics", size=(96, 96), segmentation=True, depth=True)
    assert r.stable
    m = scene.model
    tip = side_offset("right") + FINGERTIPS[2]  # middle fingertip
    uvd, ok = r.joints.project()
    x, y = np.floor(uvd[0, tip, :2]).astype(int)  # the open hand, seen from above
    assert ok[0, tip] and m.geom(r.segmentation[0, y, x]).name.endswith(("_pad", "_phalanx"))
    assert r.visible[0, tip]


def test_synth_cli_renders_the_chosen_style(tmp_path):
    import json

    from dexworld.cli import main
    from embodiments.clip import read_clip

    frames = {}
    for style in ("simple", "detailed"):
        out = tmp_path / style
        assert main(["synth", "--embodiment", "dex3_right", "--episodes", "1", "--frames", "3", "--size", "48",
                     "--motions", "random", "--hand-style", style, "--out", str(out), "--no-progress"]) == 0
        assert json.loads((out / "manifest.json").read_text())["config"]["scene"]["hand_style"] == style
        frames[style] = read_clip(out / "episode_000000.h5").frames.astype(float)
    # Same scene, motion and camera: only the hand differs, and the dark Dex3-1 darkens the frame.
    assert frames["detailed"].mean() < frames["simple"].mean() - 0.5
