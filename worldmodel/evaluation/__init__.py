"""Measuring a generated video: metrics, the keypoint probe, evaluation reports and video drawing.

Depends on ``embodiments`` only (the probe's training renders come from ``sim_bridge`` through the CLI, as data).
"""
