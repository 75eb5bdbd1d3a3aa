"""The built-in robot hands (Unitree Dex3-1, Inspire RH56): official fingertip FK, slots, MJCF, bad input."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import mujoco
import numpy as np
import pinocchio as pin
import pytest

import embodiments
from embodiments import JointLimitWarning
from embodiments.layout import SLOT_NAMES
from embodiments.mjcf import mimic_joints, urdf_to_mjcf
from embodiments.registry import ASSETS

ROBOTS = ("dex3_left", "dex3_right", "inspire_left", "inspire_right")

# Official fingertip positions (mm, 0.1 mm precision) in the root link frame, computed from Unitree's published
# URDFs (unitree_dex3_{left,right}.urdf, inspire_hand_{left,right}.urdf) with pinocchio by
# `python scripts/check_robot_fk.py <reference folder> --fixtures` — not from our model files.
# Per hand: fingertips, configurations (in the embodiment's joint_names order), positions (config, tip, xyz).
OFFICIAL = {
    "dex3_left": (
        ("thumb", "index", "middle"),
        [[-1.0472, -0.7243, 0.0, -1.5708, -1.7453, -1.5708, -1.7453], [1.0472, 0.92, 1.7453, 0.0, 0.0, 0.0, 0.0],
         [0.0, 0.0978, 0.8727, -0.7854, -0.8727, -0.7854, -0.8727],
         [0.6112, 0.2308, 0.7241, -0.0832, -1.4962, -0.8418, -0.7003],
         [0.0852, 0.5762, 1.2775, -1.0037, -1.4868, -0.3957, -0.046]],
        [[[-7.5, -91.1, -57.1], [28.5, -35.5, 28.5], [28.5, -35.5, -28.5]],
         [[53.9, -2.6, -49.2], [173.5, 1.6, 28.5], [173.5, 1.6, -28.5]],
         [[68.7, -93.1, 0.0], [105.7, -80.6, 28.5], [105.7, -80.6, -28.5]],
         [[65.5, -92.8, -28.0], [109.6, -82.5, 28.5], [122.9, -52.2, -28.5]],
         [[95.7, -43.7, -6.0], [165.2, -37.4, 28.5], [62.5, -67.3, -28.5]]],
    ),
    "dex3_right": (
        ("thumb", "index", "middle"),
        [[-1.0472, -0.92, -1.7453, 0.0, 0.0, 0.0, 0.0], [1.0472, 0.7243, 0.0, 1.5708, 1.7453, 1.5708, 1.7453],
         [0.0, -0.0978, -0.8727, 0.7854, 0.8727, 0.7854, 0.8727],
         [0.6112, 0.0351, -1.0213, 1.4876, 0.2491, 0.729, 1.045],
         [0.0852, 0.3805, -0.4678, 0.5671, 0.2586, 1.1751, 1.6993]],
        [[[53.9, 2.6, 49.2], [173.5, -1.6, 28.5], [173.5, -1.6, -28.5]],
         [[-7.5, 91.1, 57.1], [28.5, 35.5, 28.5], [28.5, 35.5, -28.5]],
         [[68.7, 93.1, 0.0], [105.7, 80.6, 28.5], [105.7, 80.6, -28.5]],
         [[56.3, 92.7, -21.6], [101.8, 77.9, 28.5], [73.2, 93.4, -28.5]],
         [[10.4, 111.6, 1.3], [47.1, 53.9, 28.5], [150.2, 59.8, -28.5]]],
    ),
    "inspire_left": (
        ("thumb", "index", "middle", "ring", "pinky"),
        [[-0.1, 0.0, 0.0, 0.0, 0.0, 0.0], [1.3, 0.5, 1.7, 1.7, 1.7, 1.7], [0.6, 0.25, 0.85, 0.85, 0.85, 0.85],
         [1.0085, 0.2904, 0.7053, 1.61, 0.2427, 0.789], [0.7382, 0.2703, 1.3446, 1.2443, 0.6138, 0.2518]],
        [[[-25.3, -117.9, 110.9], [-7.1, -208.7, 29.8], [-7.1, -214.1, 7.9], [-4.1, -208.6, -15.1],
          [-4.1, -198.9, -37.2]],
         [[-26.6, -132.4, 19.4], [-16.1, -92.8, 25.7], [-14.8, -88.3, 7.9], [-19.0, -92.0, -8.9],
          [-21.1, -98.4, -26.6]],
         [[-51.8, -143.3, 53.6], [-64.4, -145.9, 27.6], [-69.4, -145.7, 7.9], [-64.8, -148.8, -11.9],
          [-56.9, -148.3, -31.8]],
         [[-55.1, -143.6, 34.1], [-62.6, -161.0, 28.1], [-23.1, -89.0, 7.9], [-30.2, -201.5, -14.7],
          [-56.1, -153.7, -32.4]],
         [[-53.0, -143.6, 46.1], [-44.5, -103.4, 26.1], [-54.2, -106.3, 7.9], [-58.5, -173.0, -13.2],
          [-27.2, -192.4, -36.5]]],
    ),
    "inspire_right": (
        ("thumb", "index", "middle", "ring", "pinky"),
        [[-0.1, 0.0, 0.0, 0.0, 0.0, 0.0], [1.3, 0.5, 1.7, 1.7, 1.7, 1.7], [0.6, 0.25, 0.85, 0.85, 0.85, 0.85],
         [1.0085, 0.2904, 0.7053, 1.61, 0.2427, 0.789], [0.7382, 0.2703, 1.3446, 1.2443, 0.6138, 0.2518]],
        [[[-35.4, -117.6, -109.4], [-7.3, -208.7, -29.8], [-7.1, -214.1, -7.9], [-4.1, -208.6, 15.1],
          [-4.1, -198.9, 37.2]],
         [[-26.4, -132.1, -18.3], [-16.1, -92.6, -25.7], [-14.8, -88.3, -8.0], [-19.0, -92.0, 8.9],
          [-21.1, -98.4, 26.6]],
         [[-55.3, -142.9, -49.4], [-64.5, -145.8, -27.6], [-69.4, -145.7, -7.9], [-64.8, -148.8, 11.9],
          [-56.9, -148.3, 31.8]],
         [[-56.4, -143.3, -29.7], [-62.8, -160.8, -28.1], [-23.1, -89.0, -8.0], [-30.2, -201.5, 14.7],
          [-56.1, -153.7, 32.4]],
         [[-55.7, -143.2, -41.8], [-44.5, -103.2, -26.1], [-54.2, -106.3, -8.0], [-58.5, -173.0, 13.2],
          [-27.2, -192.4, 36.5]]],
    ),
}

# Official joint names (actuated, in our joint_names order) and root links.
DEX3_JOINTS = ("thumb_0", "thumb_1", "thumb_2", "middle_0", "middle_1", "index_0", "index_1")
INSPIRE_JOINTS = ("thumb_proximal_yaw", "thumb_proximal_pitch", "index_proximal", "middle_proximal",
                  "ring_proximal", "pinky_proximal")
NAMES = {
    **{f"dex3_{s}": ([f"{s}_hand_{j}_joint" for j in DEX3_JOINTS], f"{s}_hand_palm_link") for s in ("left", "right")},
    **{f"inspire_{s}": ([f"{s[0].upper()}_{j}_joint" for j in INSPIRE_JOINTS], f"{s[0].upper()}_hand_base_link")
       for s in ("left", "right")},
}


def tip_frame(name: str, finger: str) -> str:
    side = name.split("_")[1]
    return f"{side}_hand_{finger}_tip" if name.startswith("dex3") else f"{side[0].upper()}_{finger}_tip"


def random_q(hand, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(hand.lower, hand.upper, size=(n, hand.dof))


# ----------------------------------------------------------------------------------------- official kinematics
@pytest.mark.parametrize("name", ROBOTS)
def test_fingertips_match_official_urdf(name):
    hand = embodiments.get(name)
    fingers, q, expected = OFFICIAL[name]
    got = hand.frame_positions(np.array(q), [tip_frame(name, f) for f in fingers]) * 1e3
    # The figures are rounded to 0.1 mm, so agreement is required to 0.05 mm (+ float slack): far inside 1 mm.
    np.testing.assert_allclose(got, np.array(expected), atol=0.051, rtol=0)


@pytest.mark.parametrize("name", ROBOTS)
def test_sparse_joint_tips_are_the_official_fingertips(name):
    hand = embodiments.get(name)
    fingers, q, expected = OFFICIAL[name]
    # Limits like ±1.04719755 appear rounded to ±1.0472 in the table: clip the 2e-6 rad overshoot quietly.
    pos, valid = hand.sparse_joints(np.clip(q, hand.lower, hand.upper), strict=True)
    assert pos.shape == (5, 42, 3) and valid.shape == (42,)
    slots = [SLOT_NAMES.index(f"{hand.side}_{f}_tip") for f in fingers]
    np.testing.assert_allclose(pos[:, slots] * 1e3, np.array(expected), atol=0.051, rtol=0)


@pytest.mark.parametrize("name", ROBOTS)
def test_official_names_and_root(name):
    hand = embodiments.get(name)
    joints, root = NAMES[name]
    assert hand.joint_names == tuple(joints)
    assert hand.root_link == root
    for finger in OFFICIAL[name][0]:
        assert hand.kinematics.model.existFrame(tip_frame(name, finger))


def test_dex3_right_mirrors_left_across_palm_y():
    """Right = left reflected in the palm's xz plane: z-axis joints flip sign, the y-axis thumb_0 does not."""
    left, right = embodiments.get("dex3_left"), embodiments.get("dex3_right")
    flip = np.array([1, -1, -1, -1, -1, -1, -1.0])
    np.testing.assert_allclose(right.lower, np.where(flip < 0, -left.upper, left.lower), atol=0)
    np.testing.assert_allclose(right.upper, np.where(flip < 0, -left.lower, left.upper), atol=0)
    q = random_q(left, 50, seed=3)
    frames = [f for f in left.slot_frames.values()]
    mirrored = [f.replace("left", "right") for f in frames]
    pl = left.frame_positions(q, frames)
    pr = right.frame_positions(q * flip, mirrored)
    np.testing.assert_allclose(pr, pl * np.array([1, -1, 1]), atol=1e-12)


def test_inspire_mimic_couplings_move_the_followers():
    """Follower joint angle (relative rotation of successive links) = multiplier × driver angle."""
    hand = embodiments.get("inspire_left")
    q = random_q(hand, 20, seed=5)
    pairs = [("L_thumb_proximal", "L_thumb_intermediate", 1, 1.6), ("L_thumb_intermediate", "L_thumb_distal", 1, 2.4),
             ("L_index_proximal", "L_index_intermediate", 2, 1.0), ("L_pinky_proximal", "L_pinky_intermediate", 5, 1.0)]
    for parent, child, driver, mult in pairs:
        T = hand.frame_transforms(q, [parent, child])
        rel = np.linalg.inv(T[:, 0]) @ T[:, 1]
        angle = np.arccos(np.clip((np.trace(rel[:, :3, :3], axis1=1, axis2=2) - 1) / 2, -1, 1))
        np.testing.assert_allclose(angle, mult * q[:, driver], atol=1e-9)
    assert mimic_joints(hand.urdf_xml) == {
        "L_thumb_intermediate_joint": ("L_thumb_proximal_pitch_joint", 1.6, 0.0),
        "L_thumb_distal_joint": ("L_thumb_proximal_pitch_joint", 2.4, 0.0),
        **{f"L_{f}_intermediate_joint": (f"L_{f}_proximal_joint", 1.0, 0.0)
           for f in ("index", "middle", "ring", "pinky")},
    }


# ---------------------------------------------------------------------------------------------- slot mapping
@pytest.mark.parametrize("name, n_slots", [("dex3_left", 11), ("dex3_right", 11), ("inspire_left", 17),
                                           ("inspire_right", 17)])
def test_slot_mapping(name, n_slots):
    hand = embodiments.get(name)
    q = random_q(hand, 4)
    pos, valid = hand.sparse_joints(q)
    side_slots = [i for i, s in enumerate(SLOT_NAMES) if s.startswith(hand.side)]
    assert valid.sum() == n_slots and valid[side_slots].sum() == n_slots
    assert not np.any(pos[:, ~valid])
    assert not any(valid[SLOT_NAMES.index(f"{hand.side}_{f}_dip")] for f in ("index", "middle", "ring", "pinky"))
    if name.startswith("dex3"):
        assert not any(valid[SLOT_NAMES.index(f"{hand.side}_{f}_{j}")] for f in ("ring", "pinky")
                       for j in ("mcp", "pip", "dip", "tip"))
    w = SLOT_NAMES.index(f"{hand.side}_wrist")
    np.testing.assert_array_equal(pos[:, w], 0.0)  # the wrist is the root link's origin
    # Along every finger the mapped joints are distinct points at least 1 cm apart (no slot double-mapped).
    for finger in ("thumb", "index", "middle", "ring", "pinky"):
        idx = [SLOT_NAMES.index(f"{hand.side}_{finger}_{j}") for j in ("cmc", "mcp", "pip", "ip", "dip", "tip")
               if f"{hand.side}_{finger}_{j}" in SLOT_NAMES]
        idx = [i for i in idx if valid[i]]
        if len(idx) > 1:
            assert (np.linalg.norm(np.diff(pos[:, idx], axis=1), axis=-1) > 0.01).all()


# --------------------------------------------------------------------------------------- batched kinematics
@pytest.mark.parametrize("name", ROBOTS)
def test_batched_fk_equals_pinocchio_per_frame(name):
    hand = embodiments.get(name)
    kin = hand.kinematics
    q = random_q(hand, 12, seed=7).reshape(3, 4, hand.dof)
    frames = [f.name for f in kin.model.frames[1:]]
    pos = hand.frame_positions(q, frames)
    T = hand.frame_transforms(q, frames)
    assert pos.shape == (3, 4, len(frames), 3) and T.shape == (3, 4, len(frames), 4, 4)
    model = pin.buildModelFromXML(hand.urdf_xml, mimic=True)
    data = model.createData()
    order = [model.joints[model.getJointId(n)].idx_q for n in hand.joint_names]
    for qi, pi, ti in zip(q.reshape(-1, hand.dof), pos.reshape(-1, len(frames), 3),
                          T.reshape(-1, len(frames), 4, 4), strict=True):
        qp = np.zeros(model.nq)
        qp[order] = qi
        pin.framesForwardKinematics(model, data, qp)
        ref = np.stack([data.oMf[model.getFrameId(f)].homogeneous for f in frames])
        np.testing.assert_allclose(pi, ref[:, :3, 3], atol=1e-12)
        np.testing.assert_allclose(ti, ref, atol=1e-12)


def test_sparse_joints_batch_shapes_and_empty_batch():
    hand = embodiments.get("inspire_right")
    pos, valid = hand.sparse_joints(np.zeros((2, 0, 3, hand.dof)))
    assert pos.shape == (2, 0, 3, 42, 3)
    pos1, _ = hand.sparse_joints(hand.neutral())
    assert pos1.shape == (42, 3)


# ---------------------------------------------------------------------------------------------------- MJCF
@pytest.mark.parametrize("name", ROBOTS)
def test_mjcf_kinematics_match_pinocchio_and_it_steps(name):
    hand = embodiments.get(name)
    model = mujoco.MjModel.from_xml_string(hand.mjcf_xml)
    data = mujoco.MjData(model)
    mimic = mimic_joints(hand.urdf_xml)
    assert model.neq == len(mimic) and model.njnt == hand.dof + len(mimic)
    assert model.body(1).name == hand.root_link and model.body(1).parentid[0] == 0
    bodies = [model.body(i).name for i in range(1, model.nbody)]
    for qi in random_q(hand, 5, seed=11):
        values = dict(zip(hand.joint_names, qi, strict=True))
        for j, (master, mult, off) in mimic.items():
            values[j] = off + mult * values[master]
        for j, v in values.items():
            data.qpos[model.joint(j).qposadr[0]] = v
        mujoco.mj_kinematics(model, data)
        mj = np.stack([data.body(b).xpos for b in bodies])
        np.testing.assert_allclose(mj, hand.frame_positions(qi, bodies), atol=1e-6)  # MJCF text keeps 6 digits
    # It steps: 0.5 s under gravity from a bent pose stays finite and the couplings hold.
    mujoco.mj_resetData(model, data)
    data.qpos[model.joint(hand.joint_names[2]).qposadr[0]] = (hand.lower[2] + hand.upper[2]) / 2
    for _ in range(250):
        mujoco.mj_step(model, data)
    assert np.isfinite(data.qpos).all()
    for j, (master, mult, off) in mimic.items():
        q_j, q_m = data.qpos[model.joint(j).qposadr[0]], data.qpos[model.joint(master).qposadr[0]]
        assert abs(q_j - (off + mult * q_m)) < 0.01


def test_mjcf_adds_mimic_equality_once_and_checks_names():
    xml = (ASSETS / "inspire_left.urdf").read_text()
    model = mujoco.MjModel.from_xml_string(urdf_to_mjcf(xml))
    names = sorted(model.equality(i).name for i in range(model.neq))
    assert names == sorted(f"mimic_{j}" for j in mimic_joints(xml))
    i = names.index("mimic_L_thumb_distal_joint")
    eq = model.equality("mimic_L_thumb_distal_joint")
    assert eq.data[:2].tolist() == [0.0, 2.4] and i >= 0
    with pytest.raises(ValueError, match="no joint named 'L_nope_joint'"):
        urdf_to_mjcf(xml.replace('mimic joint="L_index_proximal_joint"', 'mimic joint="L_nope_joint"'))
    with pytest.raises(ValueError, match="not well-formed"):
        urdf_to_mjcf(xml[:200])


# -------------------------------------------------------------------------------------- committed model files
def test_urdf_files_are_what_the_generator_writes():
    spec = importlib.util.spec_from_file_location("make_robot_urdfs", ASSETS / "make_robot_urdfs.py")
    gen = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = gen  # dataclasses look their module up while the file executes
    try:
        spec.loader.exec_module(gen)
    finally:
        del sys.modules[spec.name]
    for name, (kind, side) in gen.HANDS.items():
        assert (ASSETS / f"{name}.urdf").read_text() == gen.urdf_text(kind(side)), name


@pytest.mark.parametrize("name", ROBOTS)
def test_links_have_plausible_mass_and_primitive_geometry(name):
    model = embodiments.get(name).kinematics.model
    masses = [i.mass for i in model.inertias[1:]]
    assert all(0.005 <= m <= 0.1 for m in masses)  # finger links: grams to tens of grams
    assert 0.1 <= model.inertias[0].mass <= 0.5  # palm
    xml = embodiments.get(name).urdf_xml
    assert "<mesh" not in xml and "<box" in xml and "<cylinder" in xml


def test_registry_has_the_six_builtins():
    assert {"dex3_left", "dex3_right", "inspire_left", "inspire_right"} <= set(embodiments.names())
    if not (Path(embodiments.__file__).parent / "human.py").exists():
        pytest.skip("the human hand module has not landed")
    assert {"mano_left", "mano_right"} <= set(embodiments.names())
    assert len(set(embodiments.names()) & {*ROBOTS, "mano_left", "mano_right"}) == 6


# ------------------------------------------------------------------------------------------------ bad input
def test_unknown_embodiment_lists_names():
    with pytest.raises(KeyError) as e:
        embodiments.get("dex5_left")
    assert "dex5_left" in str(e.value) and all(n in str(e.value) for n in ROBOTS)


@pytest.mark.parametrize("shape", [(6,), (3, 8), ()])
def test_wrong_joint_vector_length(shape):
    hand = embodiments.get("dex3_left")
    with pytest.raises(ValueError, match=r"dimension 7 .*left_hand_thumb_0_joint"):
        hand.sparse_joints(np.zeros(shape))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_joint_vector(bad):
    hand = embodiments.get("inspire_left")
    q = np.tile(hand.neutral(), (3, 1))
    q[1, 2] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        hand.sparse_joints(q)


def test_out_of_limit_angles_clip_with_warning_or_raise_when_strict():
    hand = embodiments.get("dex3_right")
    q = hand.neutral()
    q[4] = hand.upper[4] + 0.3
    with pytest.warns(JointLimitWarning, match="right_hand_middle_1_joint"):
        pos, _ = hand.sparse_joints(q)
    clipped = q.copy()
    clipped[4] = hand.upper[4]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ref, _ = hand.sparse_joints(clipped)
    np.testing.assert_allclose(pos, ref)
    with pytest.raises(ValueError, match="outside limits for right_hand_middle_1_joint"):
        hand.sparse_joints(q, strict=True)


def _user_spec(tmp_path: Path, slots: str, urdf: str | None = None, extra: str = "") -> Path:
    (tmp_path / "hand.urdf").write_text(urdf if urdf is not None else (ASSETS / "dex3_left.urdf").read_text())
    path = tmp_path / "hand.yaml"
    path.write_text(f"name: my_test_hand\nside: left\nurdf: hand.urdf\n{extra}slots:\n{slots}")
    return path


def test_user_spec_round_trip(tmp_path):
    """A user hand from YAML + URDF: same kinematics as the built-in it copies, fewer slots."""
    path = _user_spec(tmp_path, "  index_tip: left_hand_index_tip\n  left_wrist: left_hand_palm_link\n",
                      extra="root_link: left_hand_palm_link\n")
    name = embodiments.register(path, overwrite=True)
    hand, ref = embodiments.get(name), embodiments.get("dex3_left")
    q = random_q(ref, 6)
    assert sorted(hand.joint_names) == sorted(ref.joint_names)  # no joint_names in the spec: the URDF's order
    pos, valid = hand.sparse_joints(q[:, [ref.joint_names.index(n) for n in hand.joint_names]], strict=True)
    assert valid.sum() == 2
    i = SLOT_NAMES.index("left_index_tip")
    np.testing.assert_allclose(pos[:, i], ref.sparse_joints(q)[0][:, i])
    model = mujoco.MjModel.from_xml_string(hand.mjcf_xml)
    assert model.nu == 0 and model.njnt == 7


def test_user_urdf_missing_a_frame_the_spec_names(tmp_path):
    path = _user_spec(tmp_path, "  index_tip: left_hand_index_tip\n  thumb_tip: left_hand_thumb_nail\n")
    with pytest.raises(ValueError, match="no frame named 'left_hand_thumb_nail'"):
        embodiments.register(path)


def test_user_spec_wrong_root_link(tmp_path):
    path = _user_spec(tmp_path, "  index_tip: left_hand_index_tip\n", extra="root_link: base_link\n")
    with pytest.raises(ValueError, match="root_link 'base_link'.*'left_hand_palm_link'"):
        embodiments.register(path)


@pytest.mark.parametrize("text, match", [
    ("name: x\nside: left\nurdf: hand.urdf\nslots: [a, b\n", "not valid YAML"),
    ("- just\n- a list\n", "must be a mapping"),
    ("name: x\nside: left\nslots:\n  index_tip: f\n", "missing urdf"),
    ("name: x\nside: middle\nurdf: hand.urdf\nslots:\n  index_tip: left_hand_index_tip\n", "'side'"),
    ("name: x\nside: left\nurdf: hand.urdf\nslots:\n  index_nail: left_hand_index_tip\n", "unknown slot 'index_nail'"),
    ("name: x\nside: left\nurdf: hand.urdf\nslots:\n  index_tip: 3\n", "must name a frame"),
    ("name: x\nside: left\nurdf: hand.urdf\ncolour: red\nslots:\n  index_tip: left_hand_index_tip\n", "unknown keys"),
    ("name: x\nside: left\nurdf: nowhere.urdf\nslots:\n  index_tip: left_hand_index_tip\n", "does not exist"),
])
def test_malformed_yaml_spec(tmp_path, text, match):
    (tmp_path / "hand.urdf").write_text((ASSETS / "dex3_left.urdf").read_text())
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        embodiments.register(path)


def test_malformed_user_urdf(tmp_path):
    path = _user_spec(tmp_path, "  index_tip: left_hand_index_tip\n", urdf="<robot name='x'><link name='a'>")
    with pytest.raises(ValueError, match="could not parse URDF"):
        embodiments.register(path)


@pytest.mark.parametrize("fresh", [True, False])
@pytest.mark.parametrize("builtin", ["inspire_right", "dex3_left", "mano_left"])
def test_builtin_names_are_reserved_whatever_the_registry_state(tmp_path, monkeypatch, fresh, builtin):
    """A user spec named like a built-in is refused before and after the built-ins were loaded, even with
    overwrite=True; the built-in stays what it was."""
    from embodiments import registry

    if fresh:  # a process that has not asked the registry for anything yet
        monkeypatch.setattr(registry, "_factories", {})
        monkeypatch.setattr(registry, "_cache", {})
        monkeypatch.setattr(registry, "_builtins_loaded", False)
    else:
        embodiments.get(builtin)
    path = _user_spec(tmp_path, "  index_tip: left_hand_index_tip\n").read_text().replace("my_test_hand", builtin)
    (tmp_path / "clash.yaml").write_text(path)
    for overwrite in (False, True):
        with pytest.raises(ValueError, match=f"{builtin!r} is reserved for a built-in hand"):
            embodiments.register(tmp_path / "clash.yaml", overwrite=overwrite)
    assert embodiments.get(builtin).dof == {"inspire_right": 6, "dex3_left": 7, "mano_left": 20}[builtin]
