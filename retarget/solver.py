"""Batched, box-constrained Levenberg–Marquardt over a whole sequence of frames at once.

One iteration evaluates the forward kinematics and analytic Jacobian of all T frames in one go
(:class:`~retarget.torch_fk.TorchFK`), forms each frame's Gauss–Newton system (Huber via IRLS weights), adds
the temporal regulariser with the neighbouring frames' current solutions held fixed (a Jacobi sweep, so all
frames stay independent within an iteration), and solves T small (dof × dof) systems in one batched call.
Limits are kept by a projected Newton step: joints sitting on a bound with the gradient pushing outwards are
frozen for that step; joints the step would push through a bound go exactly to it and the others are re-solved
(a reduced step, not a clipped one). Each frame has its own damping that shrinks on an accepted step and grows on
a rejected one, so frames never get worse; a frame that has converged leaves the batch.

The sequence can also be solved sequentially in chunks (``chunk_size``): each chunk starts from, and is tied
by the regulariser to, the previous chunk's last solution — the warm start of frame-by-frame solvers.
Frames without enough valid source joints are not solved; they hold the previous solved frame's q (frames before
the first solved one take the first solved q) and are reported.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .losses import huber, huber_irls_weight
from .torch_fk import TorchFK


@dataclasses.dataclass
class SolverOptions:
    """Solver settings. ``temporal_weight`` is in cost units per rad² (the data cost is metres²/2 per term)."""

    max_iters: int = 30
    tol: float = 1e-6  # a frame is done when its step moves no joint more than this (rad) …
    ftol: float = 1e-4  # … or two iterations in a row lower its cost by less than this fraction
    huber_delta: float = 0.02
    temporal_weight: float = 2e-5
    rest_weight: float = 1e-7  # pull towards the rest pose: decides joints no term constrains (e.g. a finger the
    # source lacks), negligible elsewhere
    damping: float = 1e-3  # initial LM damping (relative to the diagonal of the Gauss–Newton matrix)
    max_step: float = 0.35  # rad: no joint moves further in one iteration (a trust region on top of the damping)
    chunk_size: int | None = None  # None: the whole sequence at once
    seeds: int = 1  # starts per frame: the warm start + quasi-random points in the box; the best one is kept
    seed_iters: int = 4  # LM iterations spent on each start before choosing
    lowpass_hz: float | None = None  # optional zero-phase low-pass of the solution (Butterworth, order 2)

    def __post_init__(self) -> None:
        if self.max_iters < 1:
            raise ValueError(f"max_iters must be >= 1, got {self.max_iters}")
        if not self.huber_delta > 0:
            raise ValueError(f"huber_delta must be positive, got {self.huber_delta}")
        if not self.temporal_weight >= 0:
            raise ValueError(f"temporal_weight must be >= 0, got {self.temporal_weight}")
        if not self.rest_weight >= 0:
            raise ValueError(f"rest_weight must be >= 0, got {self.rest_weight}")
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer or None, got {self.chunk_size}")
        if self.lowpass_hz is not None and not self.lowpass_hz > 0:
            raise ValueError(f"lowpass_hz must be positive or None, got {self.lowpass_hz}")


@dataclasses.dataclass
class SolveResult:
    """q (T, dof); per-frame final data cost (T,); frames that held a previous solution; iterations run."""

    q: np.ndarray
    cost: np.ndarray
    held: np.ndarray
    iterations: int


def solve_sequence(fk: TorchFK, A: np.ndarray, target: np.ndarray, weight: np.ndarray, solve_mask: np.ndarray,
                   lower: np.ndarray, upper: np.ndarray, q_init: np.ndarray, options: SolverOptions,
                   fps: float = 30.0, q_rest: np.ndarray | None = None) -> SolveResult:
    """Minimise ``sum_t sum_k weight huber(|A p(q_t) - target|) + temporal`` subject to ``lower <= q <= upper``.

    Args:
        fk: kinematics evaluating the N keypoint frames the terms combine.
        A: (K, N) term combination matrix; target (T, K, 3); weight (T, K) (0 for invalid terms).
        solve_mask: (T,) frames to solve; the rest hold the previous solution.
        lower, upper: (dof,) limits; q_init (dof,) start of the first chunk; q_rest (dof,) the rest pose
            (default q_init) that ``rest_weight`` pulls towards.
    """
    dt, dev = fk.dtype, fk.device
    T = target.shape[0]
    lo = torch.as_tensor(lower, dtype=dt, device=dev)
    hi = torch.as_tensor(upper, dtype=dt, device=dev)
    solve_idx = np.flatnonzero(solve_mask)
    q_out = np.empty((T, fk.dof))
    cost_out = np.full(T, np.nan)
    iterations = 0
    if solve_idx.size:
        A_t = torch.as_tensor(A, dtype=dt, device=dev)
        tgt = torch.as_tensor(target[solve_idx], dtype=dt, device=dev)
        w = torch.as_tensor(weight[solve_idx], dtype=dt, device=dev)
        start = torch.clamp(torch.as_tensor(q_init, dtype=dt, device=dev), lo, hi)
        rest = start if q_rest is None else torch.clamp(torch.as_tensor(q_rest, dtype=dt, device=dev), lo, hi)
        chunk = options.chunk_size or len(solve_idx)
        solved, costs = [], []
        left: torch.Tensor | None = None
        for s in range(0, len(solve_idx), chunk):
            sl = slice(s, s + chunk)
            init = _best_seed(fk, A_t, tgt[sl], w[sl], lo, hi, start, rest, options)
            q, c, it = _lm(fk, A_t, tgt[sl], w[sl], lo, hi, init, left, rest, options)
            solved.append(q)
            costs.append(c)
            iterations += it
            left = start = q[-1]
        # Clip in float64: a float32 solve can round a joint sitting on its limit a hair outside it.
        q_solved = np.clip(torch.cat(solved).cpu().numpy().astype(np.float64), lower, upper)
        q_out[solve_idx] = q_solved
        cost_out[solve_idx] = torch.cat(costs).cpu().numpy()
        # Hold: every unsolved frame takes the last solved frame before it (or the first solved frame).
        last = np.maximum.accumulate(np.where(solve_mask, np.arange(T), -1))
        src = np.where(last >= 0, last, solve_idx[0])
        q_out = q_out[src]
        if options.lowpass_hz is not None:
            q_out = lowpass(q_out, fps, options.lowpass_hz, lower, upper)
    else:
        q_out[:] = np.clip(q_init, lower, upper)
    return SolveResult(q=q_out, cost=cost_out, held=~np.asarray(solve_mask, bool), iterations=iterations)


def _best_seed(fk: TorchFK, A, tgt, w, lo, hi, start, rest, opt: SolverOptions) -> torch.Tensor:
    """Per frame, the best of ``seeds`` starts (the warm start + fixed quasi-random points in the box), each
    refined by a few LM iterations without the temporal term.

    A local solver keeps the basin it starts in, and 2–3 joint chains reaching for a tip have mirrored-elbow
    minima; the initial cost alone does not tell the right basin, a few iterations do.
    """
    B = tgt.shape[0]
    if opt.seeds == 1:
        return start.expand(B, -1).clone()
    from scipy.stats import qmc

    pts = qmc.Sobol(d=fk.dof, scramble=True, seed=0).random_base2(int(np.ceil(np.log2(opt.seeds))))
    pts = torch.as_tensor(pts[: opt.seeds - 1], dtype=lo.dtype, device=lo.device)
    cand = torch.cat([start[None], lo + pts * (hi - lo)])  # (S, dof)
    S = cand.shape[0]
    q0 = cand[:, None].expand(S, B, -1).reshape(S * B, -1)
    short = dataclasses.replace(opt, temporal_weight=0.0, max_iters=opt.seed_iters)
    q, cost, _ = _lm(fk, A, tgt.repeat(S, 1, 1), w.repeat(S, 1), lo, hi, q0, None, rest, short)
    best = cost.view(S, B).argmin(0)
    return q.view(S, B, -1)[best, torch.arange(B, device=q.device)]


def _neighbours(q: torch.Tensor, left: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum (T, dof) and count (T,) of each frame's temporal neighbours (the chunk's left anchor included)."""
    nb_sum = torch.zeros_like(q)
    nb_cnt = torch.zeros(q.shape[0], dtype=q.dtype, device=q.device)
    nb_sum[1:] += q[:-1]
    nb_sum[:-1] += q[1:]
    nb_cnt[1:] += 1
    nb_cnt[:-1] += 1
    if left is not None:
        nb_sum[0] += left
        nb_cnt[0] += 1
    return nb_sum, nb_cnt


def _term_ops(A: torch.Tensor):
    """Functions mapping keypoints (B, N, ...) to terms (B, K, ...): gathers when every row of A is
    ``+1 at b, -1 at a`` (all position and vector terms), else a matmul."""
    plus, minus = (A > 0.5).float().argmax(-1), (A < -0.5).float().argmax(-1)
    pattern = torch.zeros_like(A)
    rows = torch.arange(A.shape[0], device=A.device)
    pattern[rows, plus] += 1.0
    pattern[rows, minus] -= 1.0
    if torch.equal(pattern, A):
        return lambda x: x[:, plus] - x[:, minus]
    return lambda x: torch.einsum("kn,bn...->bk...", A, x)


def _lm(fk: TorchFK, A, tgt, w, lo, hi, q, left, rest, opt: SolverOptions
        ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Projected LM on one chunk; returns q (B, dof), final data cost (B,) and the iterations run."""
    B, dof = q.shape
    lam, delta, rho = opt.temporal_weight, opt.huber_delta, opt.rest_weight
    eye = torch.eye(dof, dtype=q.dtype, device=q.device)
    mu = torch.full((B,), opt.damping, dtype=q.dtype, device=q.device)
    terms = _term_ops(A)

    def evaluate(q_: torch.Tensor, tgt_: torch.Tensor, w_: torch.Tensor):
        pos_, J_ = fk.forward(q_, jacobian=True)
        r_ = terms(pos_) - tgt_  # (B, K, 3)
        n_ = r_.norm(dim=-1)
        return J_, r_, n_, (w_ * huber(n_, delta)).sum(-1)

    def regulariser(q_: torch.Tensor, nb_sum, nb_cnt, rest_) -> torch.Tensor:
        # lam/2 sum_nb |q - q_nb|² (neighbours fixed; constants dropped) + rho/2 |q - rest|²
        return (0.5 * lam * (nb_cnt * q_.pow(2).sum(-1) - 2 * (q_ * nb_sum).sum(-1))
                + 0.5 * rho * (q_ - rest_).pow(2).sum(-1))

    q = q.clone()

    J, r, norm, data = evaluate(q, tgt, w)
    stalled = torch.zeros(B, dtype=torch.long, device=q.device)
    active = torch.arange(B, device=q.device)  # frames still moving; converged frames drop out of the batch
    it = 0
    for it in range(1, opt.max_iters + 1):  # noqa: B007 - the count is returned
        nb_sum, nb_cnt = _neighbours(q, left)
        nb_sum, nb_cnt = nb_sum[active], nb_cnt[active]
        qa, Ja, ra, na, da, mua = q[active], J[active], r[active], norm[active], data[active], mu[active]
        wa, tga, resta = w[active], tgt[active], rest if rest.dim() == 1 else rest[active]
        Ba = qa.shape[0]
        cost = da + regulariser(qa, nb_sum, nb_cnt, resta)
        K = ra.shape[1]
        JA = terms(Ja).reshape(Ba, 3 * K, dof)  # rows (term, xyz)
        Wk = (wa * huber_irls_weight(na, delta)).repeat_interleave(3, dim=1)  # (Ba, 3K)
        JW_T = (JA * Wk[..., None]).transpose(1, 2)  # (Ba, dof, 3K)
        # The temporal curvature is counted twice: a Jacobi sweep with neighbours held fixed then moves each frame
        # only halfway to its neighbours, which damps the frame-to-frame oscillation a full move would start.
        H = JW_T @ JA + (2.0 * lam * nb_cnt[:, None, None] + rho) * eye
        g = (JW_T @ ra.reshape(Ba, 3 * K, 1))[..., 0] + lam * (nb_cnt[:, None] * qa - nb_sum) + rho * (qa - resta)
        # Projected Newton: freeze joints on a bound whose gradient points out of the box.
        frozen = ((qa <= lo) & (g > 0)) | ((qa >= hi) & (g < 0))
        free = (~frozen).to(q.dtype)
        # Marquardt damping scaled by the diagonal, floored so that a joint the targets barely see still gets damped.
        diag = torch.diagonal(H, dim1=-2, dim2=-1)
        diag = torch.maximum(diag, 1e-3 * diag.amax(-1, keepdim=True)) + 1e-12
        H_lm = H + torch.diag_embed(mua[:, None] * diag)
        dq = _reduced_step(H_lm, g, free, opt.max_step)
        # Joints the step would push through a bound go exactly to it; the others are re-solved with those moves
        # fixed (a clipped Newton step is not a descent direction, a reduced one is).
        target_q = torch.minimum(torch.maximum(qa + dq, lo), hi)
        crossing = (target_q != qa + dq) & (free > 0)
        if bool(crossing.any()):
            fixed_move = torch.where(crossing, target_q - qa, torch.zeros_like(qa))
            g2 = g + (H_lm @ fixed_move[..., None])[..., 0]
            dq = _reduced_step(H_lm, g2, free * (~crossing).to(q.dtype), opt.max_step) + fixed_move
        q_new = torch.minimum(torch.maximum(qa + dq, lo), hi)
        J_new, r_new, norm_new, data_new = evaluate(q_new, tga, wa)
        cost_new = data_new + regulariser(q_new, nb_sum, nb_cnt, resta)
        accept = cost_new <= cost
        step = (q_new - qa).abs().amax(-1)
        a1 = accept[:, None]
        q[active] = torch.where(a1, q_new, qa)
        data[active] = torch.where(accept, data_new, da)
        r[active] = torch.where(a1[..., None], r_new, ra)
        norm[active] = torch.where(a1, norm_new, na)
        J[active] = torch.where(a1[..., None, None], J_new, Ja)
        mu[active] = torch.where(accept, mua * 0.3, mua * 8.0).clamp(1e-9, 1e9)
        # A frame is done after two iterations in a row that lower its cost by less than ftol (relative), or once
        # its step is below tol; one stalled iteration may just be a rejection that raised the damping.
        small = torch.where(accept, cost - cost_new, torch.zeros_like(cost)) <= opt.ftol * cost.abs()
        st = torch.where(small, stalled[active] + 1, torch.zeros_like(active))
        stalled[active] = st
        keep = (st < 2) & (step > opt.tol)
        active = active[keep]
        if active.numel() == 0:
            break
    return q, data, it


def _reduced_step(H: torch.Tensor, g: torch.Tensor, free: torch.Tensor, max_step: float) -> torch.Tensor:
    """Newton step ``-H⁻¹ g`` over the free joints only (B, dof), frozen joints 0, scaled so that no joint moves
    more than ``max_step`` (a trust region on top of the damping)."""
    Hf = H * free[:, :, None] * free[:, None, :] + torch.diag_embed(1.0 - free)
    dq = -torch.linalg.solve(Hf, (g * free)[..., None])[..., 0]
    return dq * (max_step / dq.abs().amax(-1, keepdim=True).clamp_min(max_step))


def lowpass(q: np.ndarray, fps: float, cutoff_hz: float, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Zero-phase Butterworth low-pass (order 2) of joint trajectories (T, dof), clipped back into the limits."""
    from scipy.signal import butter, filtfilt

    nyquist = 0.5 * fps
    if cutoff_hz >= nyquist:
        raise ValueError(f"lowpass_hz ({cutoff_hz}) must be below the Nyquist frequency fps/2 = {nyquist}")
    if q.shape[0] < 4:
        return q
    b, a = butter(2, cutoff_hz / nyquist)
    out = filtfilt(b, a, q, axis=0, padlen=min(3 * max(len(a), len(b)), q.shape[0] - 1))
    return np.clip(out, lower, upper)
