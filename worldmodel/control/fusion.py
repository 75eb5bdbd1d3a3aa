"""Splat, propagation and fusion of the control module evaluated on the active cells only (the module's forward).

The fusion convolutions (eq. 8) have kernel (3, 1, 1): pointwise in space, causal in time, a small MLP applied
to each cell's time series. A cell whose input (structure map and motion features) is exactly zero in the causal
receptive field of an output frame (that frame and the 4 before it; the front is replicate-padded) gets one
constant output vector, the module's *empty-scene value* LayerNorm(SiLU(Σ_taps W₂ SiLU(b₁) + b₂)). The input
is non-zero only where some valid joint's heatmap window reaches (opacity > 0), so only those cells, over the
frames where their output can differ from the constant, are computed; the rest of the dense outputs is the
constant (exactly zero for batch elements without any valid joint).

How the work is kept small (the plain form splats all k = stride·N (frame, joint) rows of a latent frame into
every cell, then applies the first convolution to the 80 splatted channels at every point):

* The first convolution is linear in the splatted structure map, so it is applied per joint before the splat:
  the *tap table* holds per (latent frame, joint) and tap the joint's embedding times the tap's weights (H
  values). A cell's first-layer pre-activation at frame t is then one product: its heatmap values of the joints
  of frames t, t-1, t-2 (side by side) times those joints' rows of taps 2, 1, 0. Only the motion features, a
  ratio of sums splatted from the *sum table* [ε f, ε, 1] (eq. 4–5), pass through W₀…W₂ afterwards, as one
  product of three time-shifted copies (3·C channels).
* Cells are grouped in tiles of th × tw. A tile-frame's product uses only the joints whose (2r+1)² window meets
  the tile (~30 of the 168 rows of a latent frame in the benchmark case), gathered, with the separable heatmap
  H = g^y · g^x formed on the tile from one gathered factor row per joint. Tile-frames are grouped by how many
  joints they read, one batched product per group, each list padded with a zero row to the group's longest.
* Tiles, sorted by the frames where their output can differ from the constant, are cut into chunks, each
  computed on the union of its tiles' frames as a (T_c, M) grid of points with channels last, so that every step
  is one operation per chunk; the second convolution is one product with its three taps side by side and a
  causal sum of time-shifted views. Chunks are bounded in size so that their temporaries stay small, and run
  side by side on torch's threads, one thread each (``_side_by_side``). The backward pass mirrors all this,
  written by hand.

A custom autograd function, so that no grid-sized intermediate is kept: only the computed points' first- and
second-layer pre-activations and propagation sums are saved; the backward pass recomputes the rest per chunk.
Values and gradients equal the dense computation (tested in float64).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import geometry as geo

__all__ = ["empty_scene_value", "propagate_and_fuse", "tap_weights", "tile_size"]

_TAPS = 3
_REACH = 2 * (_TAPS - 1)  # frames after an input frame that the two causal convolutions' outputs still read it


def tap_weights(weight: torch.Tensor) -> torch.Tensor:
    """Conv3d weight (O, I, 3, 1, 1) → (3, I, O): the matrices of the taps t-2, t-1, t."""
    return weight[..., 0, 0].permute(2, 1, 0)


def empty_scene_value(w1, b1, w2, b2, norm_weight, norm_bias, eps: float) -> torch.Tensor:
    """(O,) output of the fusion at a point whose receptive field is all zero (differentiable in the weights)."""
    h1 = F.silu(b1)
    h2 = F.silu(w2.sum((2, 3, 4)) @ h1 + b2)
    return F.layer_norm(h2, (h2.shape[-1],), norm_weight, norm_bias, eps)


@dataclass(frozen=True)
class _Group:
    """Tile-frames of a chunk whose first-layer splat is one batched product.

    ``ids`` (G,): their indices in the chunk's frame-major tile-frames (None: all of them, in order). Each output
    tile-frame reads its own and the two previous frames' joints (the three taps): ``taps`` (G, 3k) rows of the
    flattened tap table [tap 2 of frame t | tap 1 of t-1 | tap 0 of t-2], ``y_rows``, ``x_rows`` (G, 3k) the
    same joints' rows in the factor tables, ``sums`` (G, k) frame t's joints in the table of propagation sums.
    Padding, and frames before the input starts, point to zero rows.
    """

    ids: torch.Tensor | None
    taps: torch.Tensor
    y_rows: torch.Tensor
    x_rows: torch.Tensor
    sums: torch.Tensor


@dataclass(frozen=True)
class _Chunk:
    """Tiles computed together on latent frames t0 … t1-1 of one batch element, as a (T_c, M = n·th·tw) grid.

    ``frames``: those frames' rows in the (B·T', ·) tables; ``start``: t0 == 0 (the convolutions' replicate
    padding applies; otherwise the input before t0 is zero). ``rows``: where the grid points go in the outputs of
    ``element`` (·, T'·h·w), viewed as runs of ``run`` cells along x: a tile row's tw cells when the tiles divide
    the grid, else single cells, for those at ``inside`` (indices into the T_c·M grid points; None: all) when
    edge tiles reach beyond the grid. ``groups``: the tile-frames by the number of joints they read, so that few
    products are padded much.
    """

    element: int
    frames: slice
    start: bool
    rows: torch.Tensor
    run: int
    inside: torch.Tensor | None
    groups: tuple[_Group, ...]

    @property
    def points(self) -> int:
        return self.rows.numel() * self.run


@dataclass(frozen=True)
class _Spec:
    """A chunk to build: element ``e``, frames t0 … t1-1, ``tiles`` (indices in the ny × nx grid of tiles);
    ``meets`` (T'·ny·nx, J): per (frame, tile) of the element whether each joint meets the tile."""

    e: int
    t0: int
    t1: int
    tiles: tuple[int, ...]
    meets: torch.Tensor
    grid: tuple[int, int]
    tile: tuple[int, int]
    size: tuple[int, int, int, int]  # h, w, T', B

    @property
    def points(self) -> int:
        return (self.t1 - self.t0) * len(self.tiles) * self.tile[0] * self.tile[1]

    def build(self) -> _Chunk:
        return _chunk(self.e, self.t0, self.t1, list(self.tiles), self.meets, self.grid, self.tile, self.size)


def _plan(active: torch.Tensor, ysup: torch.Tensor, xsup: torch.Tensor, tile: tuple[int, int], chunk: int):
    """Chunks covering every point whose fusion output is not the constant.

    active (B, T', h, w): points with non-zero input; ysup (B·T', J, ny), xsup (B·T', J, nx): whether joint j's
    y (x) factor is non-zero on tile row (column) ty (tx) and the joint carries weight. Causality makes a tile's
    output constant before its first active frame and from ``_REACH + 1`` frames after its last one. Tiles are
    sorted by that frame range and cut into chunks of about ``chunk`` grid points; returns them as ``_Spec``s
    (built where they are computed, so that this part runs side by side too).
    """
    bsz, frames, h, w = active.shape
    th, tw = tile
    ny, nx = ysup.shape[-1], xsup.shape[-1]
    padded = active.new_zeros((bsz, frames, ny * th, nx * tw))
    padded[..., :h, :w] = active
    tiles = padded.view(bsz, frames, ny, th, nx, tw).any(5).any(3).view(bsz, frames, ny * nx)
    t = torch.arange(frames, device=active.device)[:, None]
    first = torch.where(tiles, t, frames).amin(1)
    end = (torch.where(tiles, t, -1).amax(1) + 1 + _REACH).clamp(max=frames)
    chunks = []
    for e in range(bsz):
        ids = tiles[e].any(0).nonzero().squeeze(1)
        if ids.numel() == 0:
            continue
        ids = ids[torch.argsort(first[e, ids] * (frames + 1) + end[e, ids], stable=True)]
        # Per (frame, tile) of the element, (T'·ny·nx, J): whether each joint meets the tile.
        frame_rows = slice(e * frames, (e + 1) * frames)
        meets = (ysup[frame_rows, :, :, None] & xsup[frame_rows, :, None, :]).flatten(2).transpose(1, 2)
        meets = meets.reshape(-1, meets.shape[-1])
        group: list[int] = []
        t0 = t1 = 0
        for i, f, z in zip(ids.tolist(), first[e, ids].tolist(), end[e, ids].tolist(), strict=True):
            if group and (max(t1, z) - t0) * (len(group) + 1) * th * tw > chunk:
                chunks.append(_Spec(e, t0, t1, tuple(group), meets, (ny, nx), tile, (h, w, frames, bsz)))
                group = []
            if not group:
                t0, t1 = f, z
            group.append(i)
            t1 = max(t1, z)
        chunks.append(_Spec(e, t0, t1, tuple(group), meets, (ny, nx), tile, (h, w, frames, bsz)))
    return chunks


def _chunk(e, t0, t1, tile_ids, meets, grid, tile, size) -> _Chunk:
    """Index plan of the tiles ``tile_ids`` of element ``e`` on frames t0 … t1-1 (see ``_Chunk``).

    ``meets`` (T'·ny·nx, J): per (frame, tile) of the element whether each joint meets the tile; ``grid``: the
    tiles (ny, nx).
    """
    h, w, frames, bsz = size
    th, tw = tile
    ny, nx = grid
    n_tiles = ny * nx
    n_j = meets.shape[-1]
    dev = meets.device
    ids = torch.tensor(tile_ids, device=dev)
    n, t_c = ids.numel(), t1 - t0
    # For each tile-frame (frame-major), the (frame, tile) whose joints feed its taps 2, 1, 0 (s = 0, 1, 2 frames
    # back); before the chunk: frame 0 (replicate padding) or none (-1, the input is zero there).
    frame = torch.arange(t0, t1, device=dev).repeat_interleave(n)[:, None] - torch.arange(_TAPS, device=dev)
    tile_of = ids.repeat(t_c)[:, None]
    src = torch.where(frame >= t0, frame * n_tiles + tile_of, tile_of if t0 == 0 else -1)  # (T_c·n, 3)
    m = meets[src.clamp(min=0)] & (src >= 0)[..., None]  # (T_c·n, 3, J)
    need = m.sum(-1)
    most = max(int(need.max()), 1)
    # Each one's joints first (in order), then n_j: a scatter to their rank among the joints it reads.
    jo = torch.full((*m.shape[:2], most + 1), n_j, device=dev)
    jo.scatter_(-1, torch.where(m, m.cumsum(-1) - 1, most), torch.arange(n_j, device=dev).expand(m.shape))
    jo = jo[..., :most]
    keep = jo < n_j
    spare = bsz * frames * n_j  # the joint tables' zero row
    joint = torch.where(keep, ((e * frames + src // n_tiles) * n_j)[..., None] + jo, spare)  # (T_c·n, 3, most)
    taps = joint + (spare + 1) * (_TAPS - 1 - torch.arange(_TAPS, device=dev))[:, None]
    y_rows = torch.where(keep, joint * ny + torch.div(tile_of, nx, rounding_mode="floor")[..., None], spare * ny)
    x_rows = torch.where(keep, joint * nx + (tile_of % nx)[..., None], spare * nx)
    taps, y_rows, x_rows, joint = (x.to(torch.int32) for x in (taps, y_rows, x_rows, joint))  # to gather with
    need = need.amax(1)
    by_need = torch.argsort(need)
    sorted_need = need[by_need].tolist()
    cuts = _cuts(sorted_need)
    groups = []
    for a, z in zip(cuts[:-1], cuts[1:], strict=True):
        sel, k = by_need[a:z], max(sorted_need[z - 1], 1)
        groups.append(_Group(
            None if len(cuts) == 2 else sel,
            *(x[sel, :, :k].reshape(len(sel), -1) for x in (taps, y_rows, x_rows)),
            joint[sel, 0, :k],
        ))
    ty, tx = torch.div(ids, nx, rounding_mode="floor"), ids % nx
    ys = ty[:, None] * th + torch.arange(th, device=dev)  # (n, th)
    local = torch.arange(t0, t1, device=dev)  # the frames within the element
    rows_of = slice(e * frames + t0, e * frames + t1)
    if h % th == 0 and w % tw == 0:  # each tile row is a run of tw cells in the outputs
        rows = ((local[:, None, None] * h + ys) * (w // tw) + tx[:, None]).reshape(-1)
        return _Chunk(e, rows_of, t0 == 0, rows, tw, None, tuple(groups))
    xs = tx[:, None] * tw + torch.arange(tw, device=dev)  # (n, tw)
    rows = (local[:, None, None, None] * (h * w) + ys[:, :, None] * w + xs[:, None, :]).reshape(-1)
    inside = ((ys < h)[:, :, None] & (xs < w)[:, None, :]).expand(t_c, -1, -1, -1).reshape(-1)
    inside = None if bool(inside.all()) else inside.nonzero().squeeze(1)
    if inside is not None:
        rows = rows[inside]
    return _Chunk(e, rows_of, t0 == 0, rows, 1, inside, tuple(groups))


def _cuts(counts: list[int], most: int = 4, parts: int = 16) -> list[int]:
    """Cut points [0, …, n] splitting ascending ``counts`` into at most ``most`` runs (at multiples of n/parts)
    with the least padded work Σ run length × run maximum."""
    n = len(counts)
    pos = sorted({0, n} | {n * i // parts for i in range(1, parts)})
    best = {0: (0, [0])}  # end position index → (cost, cuts) with the runs used so far
    for _ in range(most):
        nxt = dict(best)
        for j, (cost, cuts) in best.items():
            for i in range(j + 1, len(pos)):
                c = cost + (pos[i] - pos[j]) * counts[pos[i] - 1]
                if i not in nxt or c < nxt[i][0]:
                    nxt[i] = (c, [*cuts, pos[i]])
        best = nxt
    return best[len(pos) - 1][1]


def _shifted_sum(u: torch.Tensor, bias: torch.Tensor, start: bool, pad: torch.Tensor | None) -> torch.Tensor:
    """Causal 3-tap sum (T, M, n) from tap products u (T, M, 3n) = [x W₀ | x W₁ | x W₂] of each frame:
    out[t] = bias + Σ_k u[t-2+k, :, k·n:(k+1)·n]. Before frame 0 the products are those of frame 0 (``start``:
    replicate padding) or the constant ``pad`` (3n,)."""
    t, n = u.shape[0], u.shape[-1] // _TAPS
    out = u[..., 2 * n :] + bias
    out[1:] += u[:-1, :, n : 2 * n]
    out[2:] += u[:-2, :, :n]
    lead = u[0] if start else pad
    out[0] += lead[..., n : 2 * n] + lead[..., :n]
    if t > 1:
        out[1] += lead[..., :n]
    return out


def _shifted_sum_backward(g: torch.Tensor, start: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Gradients of ``_shifted_sum`` for its output gradient g (T, M, n): (tap products (T, M, 3n), ``pad``
    (3n,), None with ``start``)."""
    t, m, n = g.shape
    gu = g.new_empty((t, m, _TAPS * n))
    gu[..., 2 * n :] = g
    gu[:-1, :, n : 2 * n] = g[1:]
    gu[-1, :, n : 2 * n] = 0
    gu[:-2, :, :n] = g[2:]
    gu[max(t - 2, 0) :, :, :n] = 0
    lead1, lead0 = g[0], g[:2].sum(0)  # gradients of the products read before frame 0 by taps 1 and 0
    if start:
        gu[0, :, n : 2 * n] += lead1
        gu[0, :, :n] += lead0
        return gu, None
    return gu, torch.cat([lead0.sum(0), lead1.sum(0), g.new_zeros(n)])


def _shift_cat(x: torch.Tensor, start: bool) -> torch.Tensor:
    """[x(t-2) | x(t-1) | x(t)] (T, M, 3d) of x (T, M, d); before frame 0, frame 0 (``start``) or zero."""
    t, m, d = x.shape
    out = x.new_empty((t, m, _TAPS * d))
    out[..., 2 * d :] = x
    out[1:, :, d : 2 * d] = x[:-1]
    out[2:, :, :d] = x[:-2]
    lead = x[0] if start else 0.0
    out[0, :, d : 2 * d] = lead
    out[:2, :, :d] = lead
    return out


def _shift_cat_backward(g: torch.Tensor, start: bool) -> torch.Tensor:
    """Gradient (T, M, d) of ``_shift_cat`` for its output gradient g (T, M, 3d)."""
    d = g.shape[-1] // _TAPS
    gx = g[..., 2 * d :].clone()
    gx[:-1] += g[1:, :, d : 2 * d]
    gx[:-2] += g[2:, :, :d]
    if start:
        gx[0] += g[0, :, d : 2 * d] + g[:2, :, :d].sum(0)
    return gx


def _motion(raw: torch.Tensor, ff: torch.Tensor, fs: torch.Tensor, eps: float):
    """Motion features from splatted sums raw (T, M, C+2) = [Σ H ε f, Σ H ε, Σ H] and per-frame floors ff (T, C),
    fs (T, 1). Returns (motion (T, M, C), numerator, safe denominator, whether the raw denominator was positive);
    see ``geometry.propagate`` for the formula."""
    c = ff.shape[-1]
    num = raw[..., :c] + eps * ff[:, None]
    den = raw[..., c : c + 1] + eps * fs[:, None]
    pos = den > 0
    den = torch.where(pos, den, torch.ones_like(den))
    return raw[..., c + 1 :] * num / den, num, den, pos


def _motion_backward(g_mot, raw, num, den, pos, c: int) -> torch.Tensor:
    """Gradient (T, M, C+2) of ``_motion`` with respect to the splatted sums, for its output gradient g_mot;
    motion = o · num / den, num = Σ H e f + floor·ff, den = Σ H e + floor·fs (1 where not positive). Its first C
    columns are ∂/∂num, which the floors ff, fs share (times the floor)."""
    g_raw = raw.new_empty(raw.shape)
    ratio = raw[..., -1:] / den
    torch.mul(g_mot, ratio, out=g_raw[..., :c])  # ∂/∂num
    g_o = torch.div((g_mot * num).sum(-1, keepdim=True), den, out=g_raw[..., c + 1 :])
    torch.where(pos, -g_o * ratio, torch.zeros_like(den), out=g_raw[..., c : c + 1])
    return g_raw


def _heat(fy, fx, g: _Group, tile) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Heatmaps (G, th·tw, 3k) of the group's joints at its tiles' cells, and the factors (G, th, 3k), (G, tw, 3k)."""
    th, tw = tile
    rows, k3 = g.y_rows.shape
    hy = fy.index_select(0, g.y_rows.view(-1)).view(rows, k3, th).transpose(1, 2).contiguous()
    hx = fx.index_select(0, g.x_rows.view(-1)).view(rows, k3, tw).transpose(1, 2).contiguous()
    heat = fy.new_empty((rows, th, tw, k3))
    torch.mul(hy[:, :, None], hx[:, None], out=heat)
    return heat.view(rows, th * tw, k3), hy, hx


def _scatter(out: torch.Tensor, ch: _Chunk, x: torch.Tensor) -> None:
    """Write a chunk's values x (T_c·M, D) to their points of the outputs out (B, D, T'·h·w)."""
    d = x.shape[-1]
    if ch.inside is not None:
        x = x.index_select(0, ch.inside)
    out[ch.element].view(d, -1, ch.run).index_copy_(1, ch.rows, x.T.view(d, -1, ch.run))


def _gather(src: torch.Tensor, ch: _Chunk, n: int) -> torch.Tensor:
    """A chunk's n grid points' values (n, D) from src (B, D, T'·h·w); zero outside the grid."""
    d = src.shape[1]
    x = src[ch.element].view(d, -1, ch.run).index_select(1, ch.rows).view(d, -1).T.contiguous()
    return x if ch.inside is None else x.new_zeros((n, d)).index_copy_(0, ch.inside, x)


def _splat(ch: _Chunk, tap_table, sum_table, fy, fx, b1, tile) -> tuple[torch.Tensor, torch.Tensor]:
    """First layer's structure-map part b1 + Σ_k H(t-2+k) e(t-2+k) W_k (T_c·n, th·tw, H) and the propagation
    sums (T_c·n, th·tw, C+2) of a chunk's tile-frames, one batched product per group of tile-frames."""
    taps_flat = tap_table.view(-1, tap_table.shape[-1])
    a1 = raw = None
    for g in ch.groups:
        heat = _heat(fy, fx, g, tile)[0]
        k = g.sums.shape[1]
        taps = taps_flat.index_select(0, g.taps.view(-1)).view(*g.taps.shape, -1)
        sums = sum_table.index_select(0, g.sums.view(-1)).view(*g.sums.shape, -1)
        x, y = torch.baddbmm(b1, heat, taps), torch.bmm(heat[..., :k], sums)
        if g.ids is None:
            return x, y
        if a1 is None:
            tiles = sum(len(h.ids) for h in ch.groups)
            a1, raw = x.new_empty((tiles, *x.shape[1:])), y.new_empty((tiles, *y.shape[1:]))
        a1.index_copy_(0, g.ids, x)
        raw.index_copy_(0, g.ids, y)
    return a1, raw


def _side_by_side(fn, chunks: list, device: torch.device) -> list:
    """[fn(part)] over the chunks split in parts of about equal size, run side by side on as many threads as torch
    has for intra-op parallelism, each part on one thread.

    The chunks are independent and their operations too small for torch's parallel regions to pay off (each
    wakes the pool's threads, which on a busy machine costs more than it saves), so on the CPU the threads go to
    chunks instead: torch's thread setting is 1 meanwhile (restored afterwards) and the workers take the caller's
    grad, inference and CPU autocast modes. With one thread, one chunk or another device, fn runs here on all.
    """
    threads = torch.get_num_threads()
    workers = min(threads, len(chunks)) if device.type == "cpu" else 1
    if workers <= 1:
        return [fn(chunks)]
    parts, load = [[] for _ in range(workers)], [0] * workers
    for ch in sorted(chunks, key=lambda ch: -ch.points):
        i = load.index(min(load))
        parts[i].append(ch)
        load[i] += ch.points
    modes = (torch.is_grad_enabled(), torch.is_inference_mode_enabled(), torch.is_autocast_enabled("cpu"),
             torch.get_autocast_dtype("cpu"))

    def one_thread(part):
        torch.get_num_threads()  # torch's lazy per-thread set-up first, so that it does not undo the next line
        torch.set_num_threads(1)
        grad, inference, autocast, dtype = modes
        with (torch.inference_mode(inference), torch.set_grad_enabled(grad),
              torch.autocast("cpu", dtype=dtype, enabled=autocast)):
            return fn(part)

    # One caller at a time changes torch's (process-wide) thread setting: a concurrent call from another thread
    # runs here on its own, so that no restore can leave the setting at another call's 1.
    if not _SIDE_BY_SIDE.acquire(blocking=False):
        return [fn(chunks)]
    try:
        futures = [_pool(workers - 1).submit(one_thread, part) for part in parts[1:]]
        try:
            first = one_thread(parts[0])
        finally:
            results = [f.result() for f in futures]
        return [first, *results]
    finally:
        torch.set_num_threads(threads)
        _SIDE_BY_SIDE.release()


_SIDE_BY_SIDE = threading.Lock()


_POOL: list = [None, 0, 0]  # executor, its threads, the process it belongs to


def _pool(workers: int) -> ThreadPoolExecutor:
    """A lasting pool of at least ``workers`` threads for ``_side_by_side`` (renewed after a fork)."""
    if _POOL[0] is None or _POOL[1] < workers or _POOL[2] != os.getpid():
        if _POOL[0] is not None and _POOL[2] == os.getpid():
            _POOL[0].shutdown(wait=False)
        _POOL[:] = [ThreadPoolExecutor(workers, thread_name_prefix="fusion"), workers, os.getpid()]
    return _POOL[0]


class _TiledFuse(torch.autograd.Function):
    """(control (B, O, T'·h·w), motion (B, C, T'·h·w)); see ``propagate_and_fuse``.

    Inputs: the joint tables (3, B·T'·J + 1, H) of tap products and (B·T'·J + 1, C+2) of propagation sums, the
    factor tables (B·T'·J·ny + 1, th), (B·T'·J·nx + 1, tw) (last rows zero), floors ff (B·T', C), fs (B·T', 1),
    first-layer motion taps w1m (3C, H), b1, second-layer taps w2 (H, 3O), b2, LayerNorm weight and bias, the
    empty-scene value (O,). Saved for the backward pass: per chunk the first-layer pre-activations (T_c, M, H),
    the propagation sums (T_c, M, C+2) and the second-layer pre-activations (T_c, M, O).
    """

    @staticmethod
    def forward(ctx, tap_table, sum_table, fy, fx, ff, fs, w1m, b1, w2, b2, nw, nb, const, given, specs, empty, shape,
                tile, eps, floor):
        bsz, frames, h, w = shape
        hid, out_dim, c = b1.shape[0], b2.shape[0], ff.shape[-1]
        fill = torch.where(empty[:, None], torch.zeros_like(const), const)
        control = fill[:, :, None].expand(-1, -1, frames * h * w).contiguous()
        motion = sum_table.new_zeros((bsz, c, frames * h * w))
        pad2 = F.silu(b1) @ w2  # second-layer tap products of the first layer's output before the input starts

        def run(part):  # the chunks built, their outputs written to control and motion, the tensors to save
            done = {}
            for spec in part:
                ch = spec.build()
                t_c = ch.frames.stop - ch.frames.start
                a1, raw = _splat(ch, tap_table, sum_table, fy, fx, b1, tile)
                a1, raw = a1.view(t_c, -1, hid), raw.view(t_c, -1, c + 2)
                if given is None:
                    mot = _motion(raw, ff[ch.frames], fs[ch.frames], floor)[0]
                else:
                    mot = _gather(given, ch, t_c * raw.shape[1]).view(t_c, -1, c)
                a1.view(-1, hid).addmm_(_shift_cat(mot, ch.start).view(-1, _TAPS * c), w1m)
                _scatter(motion, ch, mot.view(-1, c))
                del mot
                a2 = _shifted_sum(F.silu(a1) @ w2, b2, ch.start, pad2)
                _scatter(control, ch, F.layer_norm(F.silu(a2), (out_dim,), nw, nb, eps).view(-1, out_dim))
                done[id(spec)] = (ch, a1, raw, a2)
            return done

        done = {k: v for part in _side_by_side(run, specs, sum_table.device) for k, v in part.items()}
        ctx.chunks = [done[id(spec)][0] for spec in specs]
        saved = [x for spec in specs for x in done[id(spec)][1:]]
        ctx.save_for_backward(tap_table, sum_table, fy, fx, ff, fs, w1m, b1, w2, b2, nw, nb, const, given, empty,
                              *saved)
        ctx.eps, ctx.floor, ctx.shape, ctx.tile = eps, floor, shape, tile
        return control, motion

    @staticmethod
    def backward(ctx, g_control, g_motion):
        tap_table, sum_table, fy, fx, ff, fs, w1m, b1, w2, b2, nw, nb, const, given, empty, *saved = ctx.saved_tensors
        bsz, frames, h, w = ctx.shape
        th, tw = ctx.tile
        eps, floor = ctx.eps, ctx.floor
        hid, out_dim, c = b1.shape[0], b2.shape[0], ff.shape[-1]
        need = ctx.needs_input_grad[:4]  # joint tables, factor tables
        g_control = sum_table.new_zeros((bsz, out_dim, frames * h * w)) if g_control is None else g_control.contiguous()
        g_motion = None if g_motion is None else g_motion.contiguous()
        h0 = F.silu(b1)
        state = {id(ch): saved[3 * i : 3 * i + 3] for i, ch in enumerate(ctx.chunks)}
        g_given = None
        if given is not None:  # outside the chunks the motion output is the input (0 there): passed through
            g_given = torch.zeros_like(given) if g_motion is None else g_motion.clone()

        def run(part):  # the gradients from the chunks of ``part``, in the order of backward's return
            tables = zip((tap_table, sum_table, fy, fx), need, strict=True)
            acc = [torch.zeros_like(x) if n else None for x, n in tables]
            acc += [torch.zeros_like(x) for x in (ff, fs, w1m, b1, w2, b2, nw, nb, const)]
            g_taps, g_sums, g_fy, g_fx, g_ff, g_fs, g_w1m, g_b1, g_w2, g_b2, g_nw, g_nb, g_const = acc
            for ch in part:
                a1, raw, a2 = state[id(ch)]
                t_c, m = a1.shape[:2]
                # Second layer: LayerNorm, SiLU and the taps backwards.
                g_y = _gather(g_control, ch, t_c * m).view(t_c, m, out_dim)
                g_const -= g_y.sum((0, 1))
                s2 = F.silu(a2)
                _, mean, rstd = torch.native_layer_norm(s2, (out_dim,), nw, nb, eps)
                g_s2, g_nw_c, g_nb_c = torch.ops.aten.native_layer_norm_backward(
                    g_y, s2, (out_dim,), mean, rstd, nw, nb, (True, True, True)
                )
                del g_y, s2
                g_nw += g_nw_c
                g_nb += g_nb_c
                g_a2 = torch.ops.aten.silu_backward(g_s2, a2)
                del g_s2
                g_b2 += g_a2.sum((0, 1))
                g_u, g_pad = _shifted_sum_backward(g_a2, ch.start)
                del g_a2
                if g_pad is not None:  # the constant first-layer output SiLU(b1) before the chunk
                    g_w2 += torch.outer(h0, g_pad)
                    g_b1 += torch.ops.aten.silu_backward(w2 @ g_pad, b1)
                g_u = g_u.view(-1, _TAPS * out_dim)
                g_w2.addmm_(F.silu(a1).view(-1, hid).T, g_u)
                g_a1 = g_u @ w2.T
                del g_u
                g_a1 = torch.ops.aten.silu_backward.grad_input(g_a1, a1.view(-1, hid), grad_input=g_a1)
                g_b1 += g_a1.sum(0)
                # First layer, motion part: three time-shifted copies of the motion features times w1m.
                if given is None:
                    mot, num, den, pos = _motion(raw, ff[ch.frames], fs[ch.frames], floor)
                else:
                    mot = _gather(given, ch, t_c * m).view(t_c, m, c)
                g_w1m.addmm_(_shift_cat(mot, ch.start).view(-1, _TAPS * c).T, g_a1)
                del mot
                g_mot = _shift_cat_backward((g_a1 @ w1m.T).view(t_c, m, -1), ch.start)
                if g_motion is not None:
                    g_mot += _gather(g_motion, ch, t_c * m).view(t_c, m, c)
                if given is not None:  # the motion features were an input: their gradient, nothing to the sums
                    _scatter(g_given, ch, g_mot.view(-1, c))
                    g_raw = raw.new_zeros(raw.shape)
                else:
                    g_raw = _motion_backward(g_mot, raw, num, den, pos, c)
                    del num, den, pos
                    g_ff[ch.frames] += floor * g_raw[..., :c].sum(1)
                    g_fs[ch.frames] += floor * g_raw[..., c : c + 1].sum(1)
                del g_mot
                # Splat backwards: to the joint tables and, if asked, to the Gaussian factors.
                g_a1, g_raw = g_a1.view(-1, th * tw, hid), g_raw.view(-1, th * tw, c + 2)
                for g in ch.groups:
                    heat, hy, hx = _heat(fy, fx, g, ctx.tile)
                    ga = g_a1 if g.ids is None else g_a1.index_select(0, g.ids)
                    gr = g_raw if g.ids is None else g_raw.index_select(0, g.ids)
                    k = g.sums.shape[1]
                    if g_taps is not None:
                        g_rows = torch.bmm(heat.transpose(1, 2), ga)  # (G, 3k, H)
                        g_taps.view(-1, hid).index_add_(0, g.taps.view(-1), g_rows.view(-1, hid))
                    if g_sums is not None:
                        g_rows = torch.bmm(heat[..., :k].transpose(1, 2), gr)  # (G, k, C+2)
                        g_sums.index_add_(0, g.sums.view(-1), g_rows.view(-1, c + 2))
                    if g_fy is not None or g_fx is not None:
                        taps = tap_table.view(-1, hid).index_select(0, g.taps.view(-1)).view(*g.taps.shape, hid)
                        g_heat = torch.bmm(ga, taps.transpose(1, 2))
                        sums = sum_table.index_select(0, g.sums.view(-1)).view(*g.sums.shape, c + 2)
                        g_heat[..., :k] += torch.bmm(gr, sums.transpose(1, 2))
                        g_heat = g_heat.view(-1, th, tw, g.taps.shape[1])
                        if g_fy is not None:
                            g_hy = (g_heat * hx[:, None]).sum(2)  # (G, th, 3k)
                            g_fy.index_add_(0, g.y_rows.view(-1), g_hy.transpose(1, 2).reshape(-1, th))
                        if g_fx is not None:
                            g_hx = (g_heat * hy[:, :, None]).sum(1)  # (G, tw, 3k)
                            g_fx.index_add_(0, g.x_rows.view(-1), g_hx.transpose(1, 2).reshape(-1, tw))
            return acc

        parts = _side_by_side(run, ctx.chunks, sum_table.device)
        grads = [None if x is None else sum(p[i] for p in parts[1:]) + x for i, x in enumerate(parts[0])]
        # The constant went to every point of a non-empty element outside the computed chunks.
        grads[-1] += (g_control.sum(2) * (~empty)[:, None]).sum(0)
        return (*grads, g_given, *(None,) * 6)


@torch.no_grad()
def _specs(vals, gy_g, gx_g, empty, tile, chunk) -> list[_Spec]:
    """``_plan``'s chunks for the rows vals (B·T', J, E+C+2) and factors gy_g (B·T', J, h), gx_g (B·T', J, w) of
    each latent frame; ``empty`` (B,) elements left out."""
    b, h, w = empty.shape[0], gy_g.shape[-1], gx_g.shape[-1]
    th, tw = tile
    ny, nx = -(-h // th), -(-w // tw)
    opacity = torch.bmm((gy_g * vals[..., -1:]).transpose(1, 2), gx_g)  # Σ_k H_k · weight_k per latent frame
    active = (opacity > 0).view(b, -1, h, w) & ~empty[:, None, None, None]
    live = (vals[..., -1] > 0)[..., None]  # joints with weight; the others splat zeros
    ysup = (F.pad(gy_g, (0, ny * th - h)).view(*gy_g.shape[:2], ny, th) != 0).any(-1) & live
    xsup = (F.pad(gx_g, (0, nx * tw - w)).view(*gx_g.shape[:2], nx, tw) != 0).any(-1)
    return _plan(active, ysup, xsup, tile, chunk)


def tile_size(h: int, w: int) -> tuple[int, int]:
    """Tile (th, tw) for an h × w grid: 64–120 cells that divide the grid where possible (a tile row is then a run
    of cells in the outputs), else 8 × 8."""
    th = next((t for t in (8, 12, 10, 6, 16) if h % t == 0), 8)
    tw = next((t for t in (8, 12, 10, 16, 13) if w % t == 0), 8)
    return th, tw


def propagate_and_fuse(
    values: torch.Tensor,
    gy: torch.Tensor,
    gx: torch.Tensor,
    floor_feat: torch.Tensor,
    floor_sum: torch.Tensor,
    floor: float,
    conv1: torch.nn.Conv3d,
    conv2: torch.nn.Conv3d,
    norm: torch.nn.LayerNorm,
    stride: int = 4,
    empty: torch.Tensor | None = None,
    chunk: int = 6144,
    tile: tuple[int, int] | None = None,
    motion: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Splat, propagation (eq. 4–5) and fusion (eq. 8) on the active points only → control volume, motion.

    values (B, T, N, E+C+2): per (frame, joint) the weighted rows [E, ε f, ε, 1] that ``geometry.splat_separable``
    would splat (structure map, Σ H ε f, Σ H ε, opacity); gy (B, T, N, h), gx (B, T, N, w) the windowed Gaussian
    factors; floor_feat (B, C, T'), floor_sum (B, 1, T'), ``floor`` the softmax floor (``geometry.propagate``).
    A point (latent frame, cell) is active when its opacity is positive; outside the causal reach of the active
    points the motion features are 0 and the control volume is the empty-scene value. ``empty`` (B,) bool:
    elements whose control volume is exactly 0. ``chunk``: grid points computed together (their temporaries vs.
    the number of operations); ``tile``: (th, tw) cells sharing one joint list (default: ``tile_size``). On the
    CPU with several torch threads, chunks run side by side, one thread each, forward and backward. Returns the
    control volume (B, O, T', h, w) and motion features (B, C, T', h, w), both contiguous, equal (values and
    gradients) to ``splat_separable`` → ``propagate`` → the dense fusion.

    ``motion`` (B, C, T', h, w): motion features computed elsewhere (the paper mode's per-frame propagation), used
    instead of the propagation here; they must be zero wherever the opacity of ``values`` is (outside the joints'
    windows), and gradients flow back to them. The sum columns of ``values`` are then unused (pass zeros).
    """
    b, width = values.shape[0], values.shape[-1]
    h, w = gy.shape[-1], gx.shape[-1]
    c = floor_feat.shape[1]
    e_dim = width - c - 2
    tile = tile_size(h, w) if tile is None else tile
    th, tw = tile
    ny, nx = -(-h // th), -(-w // tw)
    frames, _ = geo.temporal_groups(values.shape[1], stride)
    if empty is None:
        empty = torch.zeros(b, dtype=torch.bool, device=values.device)
    vals, gy_g, gx_g = (geo.group_latent(x, stride) for x in (values, gy, gx))  # (B·T', J, ·)
    w1 = tap_weights(conv1.weight)  # (3, E+C, H)
    hid = w1.shape[-1]
    w1e = w1[:, :e_dim].permute(1, 0, 2).reshape(e_dim, _TAPS * hid)  # [W₀ | W₁ | W₂] side by side
    w1m = w1[:, e_dim:].reshape(_TAPS * c, hid)  # [W₀; W₁; W₂] stacked, for [m(t-2) | m(t-1) | m(t)]
    w2 = tap_weights(conv2.weight).permute(1, 0, 2).reshape(hid, -1)  # (H, 3·O)
    # Joint tables, each with a zero row at the end that pads joint lists: (3, B·T'·J + 1, H), (B·T'·J + 1, C+2).
    tap_table = F.pad((vals[..., :e_dim] @ w1e).view(-1, _TAPS, hid).transpose(0, 1), (0, 0, 0, 1))
    sum_table = F.pad(vals[..., e_dim:].reshape(-1, c + 2), (0, 0, 0, 1))
    fy = F.pad(F.pad(gy_g, (0, ny * th - h)).reshape(-1, th), (0, 0, 0, 1))  # (B·T'·J·ny + 1, th)
    fx = F.pad(F.pad(gx_g, (0, nx * tw - w)).reshape(-1, tw), (0, 0, 0, 1))
    specs = _specs(vals, gy_g, gx_g, empty, tile, chunk)
    given = None if motion is None else motion.reshape(b, c, -1).contiguous()
    args = (conv1.weight, conv1.bias, conv2.weight, conv2.bias, norm.weight, norm.bias)
    const = empty_scene_value(*args, norm.eps)
    control, motion = _TiledFuse.apply(
        tap_table, sum_table, fy, fx, floor_feat.transpose(1, 2).reshape(b * frames, c),
        floor_sum.transpose(1, 2).reshape(b * frames, 1), w1m, conv1.bias, w2, conv2.bias, norm.weight, norm.bias,
        const, given, specs, empty, (b, frames, h, w), tile, norm.eps, floor,
    )
    return control.view(b, -1, frames, h, w), motion.view(b, c, frames, h, w)
