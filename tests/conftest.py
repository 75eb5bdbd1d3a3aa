"""Test-wide settings, applied before any test module imports torch."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see dexworld/__init__.py
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MUJOCO_GL", "egl")
