"""A small third-party-style hand for the user-hand tests: a URDF (our joint names, a mimic coupling) and a
Menagerie-style MJCF of the same hand with its own joint and body names, default classes, its own actuators, a
floor and a light, and no coupling between the index finger's two joints."""

from __future__ import annotations

from pathlib import Path

MIMIC = 1.3  # index_intermediate_joint = 1.3 x index_proximal_joint in the URDF

_INERTIA = ('<inertial><mass value="0.02"/><inertia ixx="1e-6" ixy="0" ixz="0" iyy="1e-6" iyz="0" izz="1e-6"/>'
            '</inertial>')


def _link(name: str, length: float | None) -> str:
    if length is None:
        return f'<link name="{name}"/>'
    geom = (f'<origin xyz="0 {length / 2} 0" rpy="-1.5707963 0 0"/><geometry><cylinder radius="0.008" '
            f'length="{length}"/></geometry>')
    return f'<link name="{name}">{_INERTIA}<visual>{geom}</visual><collision>{geom}</collision></link>'


def _joint(name, parent, child, xyz, axis=None, mimic=None, upper=1.5):
    kind = "fixed" if axis is None else "revolute"
    out = f'<joint name="{name}" type="{kind}"><parent link="{parent}"/><child link="{child}"/><origin xyz="{xyz}"/>'
    if axis is not None:
        out += f'<axis xyz="{axis}"/><limit lower="0" upper="{upper}" effort="2" velocity="5"/>'
    if mimic is not None:
        out += f'<mimic joint="{mimic}" multiplier="{MIMIC}" offset="0"/>'
    return out + "</joint>"


URDF = "".join([
    '<?xml version="1.0"?><robot name="toy_right">',
    '<link name="palm"><inertial><mass value="0.2"/><inertia ixx="1e-4" ixy="0" ixz="0" iyy="1e-4" iyz="0" '
    'izz="1e-4"/></inertial><visual><origin xyz="0 0.045 0"/><geometry><box size="0.08 0.09 0.02"/></geometry>'
    '</visual><collision><origin xyz="0 0.045 0"/><geometry><box size="0.08 0.09 0.02"/></geometry></collision></link>',
    _joint("index_proximal_joint", "palm", "index_proximal", "0.025 0.09 0", "1 0 0"), _link("index_proximal", 0.04),
    _joint("index_intermediate_joint", "index_proximal", "index_intermediate", "0 0.04 0", "1 0 0",
           mimic="index_proximal_joint", upper=2.0),
    _link("index_intermediate", 0.035),
    _joint("index_tip_joint", "index_intermediate", "index_tip", "0 0.035 0"), _link("index_tip", None),
    _joint("middle_proximal_joint", "palm", "middle_proximal", "-0.01 0.095 0", "1 0 0"),
    _link("middle_proximal", 0.06),
    _joint("middle_tip_joint", "middle_proximal", "middle_tip", "0 0.06 0"), _link("middle_tip", None),
    _joint("thumb_yaw_joint", "palm", "thumb_base", "0.035 0.03 0", "0 1 0"), _link("thumb_base", 0.02),
    _joint("thumb_pitch_joint", "thumb_base", "thumb_proximal", "0 0.02 0", "1 0 0"), _link("thumb_proximal", 0.04),
    _joint("thumb_tip_joint", "thumb_proximal", "thumb_tip", "0 0.04 0"), _link("thumb_tip", None),
    "</robot>",
])

# The same hand as a third party would write it: other joint and body names, classes, no coupling equality.
MJCF = """<mujoco model="toy hand (third-party style)">
  <compiler angle="radian"/>
  <default>
    <default class="toy"><joint damping="0.05" armature="0.001"/><geom rgba="0.8 0.7 0.6 1"/>
      <position kp="2" forcerange="-1 1"/></default>
  </default>
  <worldbody>
    <light pos="0 0 1"/>
    <geom name="floor" type="plane" size="1 1 0.1"/>
    <body name="base" childclass="toy">
      <geom type="box" pos="0 0.045 0" size="0.04 0.045 0.01" mass="0.2"/>
      <body name="ff_prox" pos="0.025 0.09 0">
        <joint name="ff_mcp" axis="1 0 0" range="0 1.5"/>
        <geom type="capsule" fromto="0 0 0 0 0.04 0" size="0.008" mass="0.02"/>
        <body name="ff_mid" pos="0 0.04 0">
          <joint name="ff_pip" axis="1 0 0" range="0 2.0"/>
          <geom type="capsule" fromto="0 0 0 0 0.035 0" size="0.008" mass="0.02"/>
        </body>
      </body>
      <body name="mf_prox" pos="-0.01 0.095 0">
        <joint name="mf_mcp" axis="1 0 0" range="0 1.5"/>
        <geom type="capsule" fromto="0 0 0 0 0.06 0" size="0.008" mass="0.02"/>
      </body>
      <body name="th_base" pos="0.035 0.03 0">
        <joint name="th_rot" axis="0 1 0" range="0 1.5"/>
        <geom type="capsule" fromto="0 0 0 0 0.02 0" size="0.008" mass="0.02"/>
        <body name="th_prox" pos="0 0.02 0">
          <joint name="th_flex" axis="1 0 0" range="0 1.5"/>
          <geom type="capsule" fromto="0 0 0 0 0.04 0" size="0.008" mass="0.02"/>
        </body>
      </body>
    </body>
  </worldbody>
  <actuator>
    <position name="ff_act" class="toy" joint="ff_mcp" ctrlrange="0 1.5"/>
    <position name="mf_act" class="toy" joint="mf_mcp" ctrlrange="0 1.5"/>
    <position name="th_rot_act" class="toy" joint="th_rot" ctrlrange="0 1.5"/>
    <position name="th_flex_act" class="toy" joint="th_flex" ctrlrange="0 1.5"/>
  </actuator>
  <sensor><jointpos name="ff_pip_pos" joint="ff_pip"/></sensor>
</mujoco>
"""

JOINT_MAP = {"index_proximal_joint": "ff_mcp", "index_intermediate_joint": "ff_pip", "middle_proximal_joint": "mf_mcp",
             "thumb_yaw_joint": "th_rot", "thumb_pitch_joint": "th_flex"}

SPEC = """name: {name}
side: right
description: toy third-party hand (renamed MJCF, uncoupled index)
urdf: toy_right.urdf
mjcf: toy_right.xml
joint_names: [index_proximal_joint, middle_proximal_joint, thumb_yaw_joint, thumb_pitch_joint]
mjcf_joints:
{joint_map}
slots:
  wrist: palm
  thumb_cmc: thumb_base
  thumb_mcp: thumb_proximal
  thumb_tip: thumb_tip
  index_mcp: index_proximal
  index_pip: index_intermediate
  index_tip: index_tip
  middle_mcp: middle_proximal
  middle_tip: middle_tip
"""


def write_toy_hand(folder: Path, name: str = "toy_right", joint_map: dict[str, str] | None = None) -> Path:
    """Write the URDF, the MJCF and a spec (named ``name``) into ``folder``; returns the spec path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "toy_right.urdf").write_text(URDF)
    (folder / "toy_right.xml").write_text(MJCF)
    jm = "\n".join(f"  {k}: {v}" for k, v in (JOINT_MAP if joint_map is None else joint_map).items())
    path = folder / f"{name}.yaml"
    path.write_text(SPEC.format(name=name, joint_map=jm))
    return path
