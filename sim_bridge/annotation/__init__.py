"""Egocentric annotation: per-frame hand detections → consistent two-hand tracks → quality-filtered training clips.

Modules: :mod:`.schema` (input files), :mod:`.tracking` (two-slot tracker), :mod:`.filters` (clip quality),
:mod:`.pipeline` (per-video work and the process pool), :mod:`.ray_adapter` (the same work on a Ray cluster).
"""

from .filters import DROP_REASONS, FilterConfig, FilterResult, evaluate_clip, plausible_hands
from .pipeline import (
    AnnotationConfig,
    ClipRecord,
    VideoReport,
    annotate_video,
    annotate_videos,
    detection_joints,
    mirror_clip,
)
from .schema import VideoDetections, load_detections, save_detections
from .tracking import TrackerConfig, Tracks, track

__all__ = [
    "DROP_REASONS", "AnnotationConfig", "ClipRecord", "FilterConfig", "FilterResult", "TrackerConfig", "Tracks",
    "VideoDetections", "VideoReport", "annotate_video", "annotate_videos", "detection_joints", "evaluate_clip",
    "load_detections", "mirror_clip", "plausible_hands", "save_detections", "track",
]
