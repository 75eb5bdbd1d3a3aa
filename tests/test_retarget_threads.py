"""The solver's CPU threads (one thread for small batches, torch's setting restored) and the shape-error metric."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest
import torch

from embodiments.motions import human_motion
from retarget import Retargeter, cpu_threads, retargeter
from retarget.metrics import fingertip_shape_error


@pytest.fixture
def two_threads():
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(saved)


def test_small_solves_run_on_one_thread_and_restore_the_setting(monkeypatch, two_threads):
    seen = []
    real = retargeter.solve_sequence

    def spy(*args, **kw):
        seen.append(torch.get_num_threads())
        return real(*args, **kw)

    monkeypatch.setattr(retargeter, "solve_sequence", spy)
    rt = Retargeter("mano_right", "inspire_right", "vector")
    motion = human_motion("pinch", frames=20)
    q = rt.retarget(motion)
    assert seen == [1] and torch.get_num_threads() == 2
    monkeypatch.setattr(cpu_threads, "SMALL_WORK", 10)  # the same solve counted as large keeps torch's threads
    np.testing.assert_allclose(rt.retarget(motion), q, atol=1e-5)
    assert seen == [1, 2] and torch.get_num_threads() == 2


def test_concurrent_callers_leave_the_setting_as_they_found_it(two_threads):
    inside, go = threading.Barrier(2), threading.Event()
    counts = []

    def caller():
        with cpu_threads.solver_threads(100, "cpu"):
            inside.wait(timeout=10)  # both callers inside at once, then they leave in either order
            counts.append(torch.get_num_threads())
            go.wait(timeout=10)

    workers = [threading.Thread(target=caller) for _ in range(2)]
    for w in workers:
        w.start()
    for _ in range(1000):
        if len(counts) == 2:
            break
        time.sleep(0.01)
    go.set()
    for w in workers:
        w.join()
    assert counts == [1, 1] and torch.get_num_threads() == 2


def test_shape_error_by_hand():
    human = np.array([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    err, s = fingertip_shape_error(0.5 * human, human)  # same shape at half the size: no error
    assert err == pytest.approx(0.0, abs=1e-12) and s == pytest.approx(0.5)
    robot = np.array([[[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    # Pair distances (0-1, 0-2, 1-2): human 1, 1, √2; robot 2, 1, √5. s = (2 + 1 + √10) / (1 + 1 + 2).
    s_ref = (3 + math.sqrt(10)) / 4
    err_ref = (abs(s_ref - 2) + abs(s_ref - 1) + abs(s_ref * math.sqrt(2) - math.sqrt(5))) / 3
    err, s = fingertip_shape_error(robot, human)
    assert s == pytest.approx(s_ref) and err == pytest.approx(err_ref)
    nan_frame = np.concatenate([robot, np.full_like(robot, np.nan)])
    assert fingertip_shape_error(nan_frame, np.concatenate([human, human]))[0] == pytest.approx(err_ref)
