"""Column titles over side-by-side videos: a white band with text above each panel, panels unchanged below it."""

import numpy as np
import pytest

from worldmodel.evaluation.video import side_by_side

TITLES = ("simulated", "imagined", "imagined + commanded joints")


@pytest.fixture
def videos():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (3, 40, 128, 3), dtype=np.uint8) for _ in range(3)]


def test_title_band_sits_above_unchanged_panels(videos):
    plain = side_by_side(*videos)
    titled = side_by_side(*videos, titles=TITLES)
    band = titled.shape[1] - plain.shape[1]
    assert 8 <= band <= 30  # a readable line of text, not a second video
    assert titled.shape[0] == plain.shape[0] and titled.shape[2] == plain.shape[2]
    np.testing.assert_array_equal(titled[:, band:], plain)  # the panels are pixel for pixel what they were
    assert (titled[:, :band] == titled[:1, :band]).all()  # the band is the same in every frame


def test_each_title_is_drawn_over_its_own_panel(videos):
    titled = side_by_side(*videos, gap=2, titles=TITLES)
    band = titled.shape[1] - 40
    ink = (titled[0, :band] < 128).all(-1)  # dark text on white
    b = titled[0, :band].astype(int)
    assert (b.max(-1) - b.min(-1) <= 1).all()  # grey text on white: no colour from the panels leaks in
    assert (b[~ink] > 128).all() and (b == 255).all(-1).mean() > 0.6  # mostly white
    for k in range(3):
        x0 = k * (128 + 2)
        cols = np.nonzero(ink[:, x0:x0 + 128].any(0))[0]
        assert len(cols) > 10, f"no text over panel {k}"
        assert abs((cols.min() + cols.max()) / 2 - 64) < 6  # centred over the panel
    assert not ink[:, 128:130].any() and not ink[:, 258:260].any()  # nothing drawn over the gaps
    # the long third title is wider than the short first one
    widths = [np.ptp(np.nonzero(ink[:, k * 130:k * 130 + 128].any(0))[0]) for k in range(3)]
    assert widths[2] > widths[0]


def test_titles_must_match_the_videos(videos):
    with pytest.raises(ValueError, match="one per video"):
        side_by_side(*videos, titles=("a", "b"))
