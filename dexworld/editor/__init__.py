"""Interactive joint editor: drag hand joints in 3D in the browser, regenerate the video, simulate the robot.

``state`` (pure editing state, undo/redo, upload checks), ``overlay`` (2D trajectory view), ``runners`` (Generate and
Simulate without UI) and ``app`` (the viser front end). Start it with ``dexworld edit``.
"""

from .state import EditorState, check_editable, load_image_bytes, load_joints_bytes

__all__ = ["EditorState", "check_editable", "load_image_bytes", "load_joints_bytes"]
