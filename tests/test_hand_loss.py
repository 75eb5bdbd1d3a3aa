"""The hand-region term of the stage-2 loss: pixel masks onto the causal VAE's latent grid, the per-sample hand mean,
and how it enters the trainer's loss (checked against cases whose answer is known without the code)."""

from __future__ import annotations

import pytest
import torch
from _wm_helpers import CONTROL, SMALL_TINY, write_clips

from worldmodel.training.hand_loss import hand_term, latent_hand_mask
from worldmodel.training.trainer import TrainConfig, Trainer

torch.set_num_threads(1)


def test_latent_mask_follows_the_causal_grouping_and_the_spatial_cells():
    # 9 frames, 8x8 pixels → 3 latent frames (0 | 1-4 | 5-8), 2x2 cells of 4x4 pixels
    px = torch.zeros(1, 9, 8, 8, dtype=torch.bool)
    px[0, 0, 0, 7] = True  # frame 0, top right  → latent frame 0, cell (0, 1)
    px[0, 4, 5, 1] = True  # frame 4, bottom left → latent frame 1, cell (1, 0)
    px[0, 5, 3, 3] = True  # frame 5, top left    → latent frame 2, cell (0, 0)
    expected = torch.zeros(1, 3, 2, 2, dtype=torch.bool)
    expected[0, 0, 0, 1] = expected[0, 1, 1, 0] = expected[0, 2, 0, 0] = True
    assert torch.equal(latent_hand_mask(px, (3, 2, 2)), expected)
    with pytest.raises(ValueError, match="does not tile"):
        latent_hand_mask(px, (3, 3, 3))


def test_hand_term_is_the_mean_over_hand_cells_per_sample():
    sq = torch.zeros(2, 2, 1, 2, 2)
    sq[0, :, 0, 0, 0] = torch.tensor([1.0, 3.0])
    sq[0, :, 0, 1, 1] = torch.tensor([5.0, 7.0])  # outside sample 0's hand
    sq[1] = 9.0
    mask = torch.zeros(2, 1, 2, 2, dtype=torch.bool)
    mask[0, 0, 0, 0] = True  # sample 0: one cell, 2 channels → (1 + 3) / 2; sample 1: no hand → 0
    assert hand_term(sq, mask).tolist() == [2.0, 0.0]


def _trainer(tmp_path, **kw):
    data = tmp_path / "data"
    data.mkdir()
    write_clips(data, 1)
    return Trainer(TrainConfig(data=str(data), out=str(tmp_path / "run"), tiny=SMALL_TINY, control=CONTROL,
                               num_frames=5, steps=1, lora_rank=2, joint_mask_prob=0.0, progress=False,
                               checkpoint_every=0, **kw))


@pytest.mark.filterwarnings("ignore:.*every joint is invalid")
def test_trainer_adds_the_hand_region_loss(tmp_path):
    tr = _trainer(tmp_path)
    batch = next(iter(tr.loader))

    def loss(weight, radius=6.0):
        tr.cfg.hand_weight, tr.cfg.hand_radius_px = weight, radius
        return tr.compute_loss(batch)[0].item()  # noise and σ come from (seed, step, index): the same each call

    plain = loss(0.0)
    # A radius wider than the frame makes every latent cell a hand cell: the hand mean is the plain MSE.
    assert loss(2.5, radius=1e3) == pytest.approx(3.5 * plain, rel=1e-5)
    # The clip's hand covers part of the frame: a different, positive addition.
    some = loss(2.5)
    assert some > plain and some != pytest.approx(3.5 * plain, rel=1e-3)
    batch["valid"] = torch.zeros_like(batch["valid"])  # no joint anywhere: no hand cell, nothing added
    batch["index"] = batch["index"] + 1  # (another window: the trainer projects each window's hand once)
    assert loss(2.5) == pytest.approx(loss(0.0), rel=1e-6)


def test_trainer_projects_each_window_once(tmp_path, monkeypatch):
    from worldmodel.training import trainer as trainer_module

    calls = []
    real = trainer_module.hand_pixel_masks
    monkeypatch.setattr(trainer_module, "hand_pixel_masks", lambda j, *a: calls.append(len(j)) or real(j, *a))
    tr = _trainer(tmp_path, hand_weight=2.0)
    batch = next(iter(tr.loader))
    first = tr.compute_loss(batch)[0].item()
    assert tr.compute_loss(batch)[0].item() == pytest.approx(first, rel=1e-6) and calls == [1]


def test_hand_weight_trains_and_is_validated(tmp_path):
    with pytest.raises(ValueError, match="hand_weight"):
        TrainConfig(hand_weight=-1.0).validate()
    tr = _trainer(tmp_path, hand_weight=2.0)
    assert len(tr.train()) == 1


def test_cli_passes_hand_weight():
    from dexworld.cli import build_parser
    from dexworld.commands.train import build_config

    args = build_parser().parse_args(["train", "--data", "d", "--out", "o", "--hand-weight", "2"])
    assert build_config(args).hand_weight == 2.0
