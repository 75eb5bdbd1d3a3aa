"""Benchmark: HandControlModule (tiled active-cell splat and fusion) vs a straightforward dense implementation.

Full scale by default: B=1, 81 frames, 42 joints, 480x832 canvas → 60x104 latent, 16 latent channels.
Prints forward time, forward+backward time, peak memory and the max abs difference of the outputs.

    .venv/bin/python benchmarks/control_module.py [--device cpu|cuda] [--repeats 5] [--threads N] [--clock cpu]
        [--mode upstream|paper]

Time: best of ``--repeats`` runs, the implementations interleaved. ``--clock wall`` (default) is elapsed time;
``--clock cpu`` is the process's CPU time (time.process_time, all threads), which other jobs on a shared machine
disturb much less — use it with ``--threads 1`` (with more threads it also counts the thread pool's spinning).

Peak memory: on CUDA, torch.cuda.max_memory_allocated above what the inputs and weights hold. On CPU, each
implementation's forward+backward (loss = mean square of both outputs) runs once, after a warm-up on a tiny
case, in a fresh subprocess while a thread samples the resident set size (/proc/self/statm) every 0.2 ms; we
report the peak minus the RSS just before the run, i.e. what the computation added to the process's memory,
allocator behaviour included. It is measured twice: with glibc's default malloc (freed blocks below its dynamic
mmap threshold, up to 32 MiB, stay in the process) and with MALLOC_MMAP_THRESHOLD_=65536 (every block of
64 KiB or more is returned to the system when freed, so the RSS follows the live tensors closely).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

import torch

from worldmodel import HandControlModule


def dense_signal(model: HandControlModule, joints, K, z0):
    """Structure map and motion features by the same equations (upstream or paper mode, all joints valid,
    none nearer than the 0.2 m depth clamp), written plainly with dense (B, T, N, h, w) heatmaps."""
    paper = model.config.occlusion == "paper"
    cfg = model.config
    B, T, N, _ = joints.shape
    _, C, h, w = z0.shape
    Kl = K.clone()
    Kl[:, :2] = Kl[:, :2] / cfg.downsample
    z = joints[..., 2].clamp(min=cfg.min_depth)
    u = Kl[:, None, None, 0, 0] * joints[..., 0] / z + Kl[:, None, None, 0, 2]
    v = Kl[:, None, None, 1, 1] * joints[..., 1] / z + Kl[:, None, None, 1, 2]
    d = cfg.disparity_scale / z
    half = cfg.embed_dim // 2
    freqs = torch.exp(-torch.log(torch.tensor(cfg.encoding_period)) * torch.arange(half // 2) / (half // 2 - 1))
    freqs = freqs.to(joints)
    enc = [torch.cat([torch.sin(x[..., None] * freqs), torch.cos(x[..., None] * freqs)], -1) for x in (u, v, d)]
    ids = model.joint_embedding.weight.expand(B, T, N, half)
    # paper (eq. 6): MLP([γ(u), γ(v), γ(d); E_id]); the authors': [MLP(mean of the three encodings), E_id]
    paper_emb = model.coord_mlp(torch.cat([*enc, ids], -1)) if paper else None
    emb = paper_emb if paper else torch.cat([model.coord_mlp(sum(enc) / 3), ids], -1)

    ys = torch.arange(h, dtype=joints.dtype, device=joints.device)
    xs = torch.arange(w, dtype=joints.dtype, device=joints.device)
    H = torch.exp(-((xs - u[..., None, None]) ** 2 + (ys[:, None] - v[..., None, None]) ** 2)
                  / (2 * cfg.heatmap_sigma**2))  # (B, T, N, h, w)

    u0, v0, d0 = u[:, 0], v[:, 0], d[:, 0]
    dist = ((u0[:, :, None] - u0[:, None]) ** 2 + (v0[:, :, None] - v0[:, None]) ** 2).sqrt()
    lead = d0[:, None, :] - d0[:, :, None]
    others = ~torch.eye(N, dtype=torch.bool, device=joints.device)
    if paper:  # eq. 2: Gaussian spatial term times a sigmoid of the depth lead; v = 1 - max over the others
        p_occ = torch.exp(-dist**2 / (2 * cfg.soft_tau**2)) * torch.sigmoid(cfg.soft_gamma * lead)
        vis = 1.0 - torch.where(others, p_occ, torch.zeros_like(p_occ)).amax(-1)
    else:
        occ = (dist < cfg.occlusion_radius) & (lead > cfg.occlusion_depth_margin) & others
        vis = 1.0 - occ.any(-1).to(joints.dtype)
    H0 = H[:, 0]
    src = torch.einsum("bnhw,bchw->bnc", H0 / (H0.sum((-1, -2), keepdim=True) + 1e-6), z0) * vis[..., None]

    struct = torch.einsum("btnhw,btnc->btchw", H, emb)

    def compress(x):
        Tl = 1 + (x.shape[1] - 1) // cfg.temporal_stride
        rest = x[:, 1 : 1 + cfg.temporal_stride * (Tl - 1)]
        rest = rest.reshape(x.shape[0], Tl - 1, cfg.temporal_stride, *x.shape[2:]).mean(2)
        return torch.cat([x[:, :1], rest], 1)

    Sc = compress(struct)
    if paper:  # eqs. 4-5 on every input frame, then compressed
        wts = torch.softmax(torch.log(H + cfg.softmax_floor) + model.depth_scale * d[..., None, None], dim=2)
        motion = compress(torch.einsum("btnhw,bnc->btchw", wts, src) * H.sum(2)[:, :, None]).transpose(1, 2)
        return Sc.transpose(1, 2), motion
    Hc, dc = compress(H), compress(d)
    wts = torch.softmax(torch.log(Hc + cfg.softmax_floor) + model.depth_scale * dc[..., None, None], dim=2)
    motion = torch.einsum("btnhw,bnc->bcthw", wts, src) * Hc.sum(2)[:, None]
    return Sc.transpose(1, 2), motion


def dense_control(model: HandControlModule, joints, K, z0):
    """The whole module: dense control signal, then the dense fusion (``HandControlModule.fuse``)."""
    structure, motion = dense_signal(model, joints, K, z0)
    return model.fuse(structure, motion), motion


def make_case(args, device):
    """Two hands of 21 joints, ~8 cm across, 0.35–0.6 m from the camera, moving smoothly over the clip."""
    g = torch.Generator().manual_seed(0)
    T, N = args.frames, 42
    t = torch.linspace(0, 1, T)[:, None, None]
    centres = torch.tensor([[-0.08, 0.05, 0.45], [0.09, 0.04, 0.5]])
    offsets = 0.04 * torch.randn(2, 21, 3, generator=g)
    path = 0.06 * torch.stack([torch.sin(3 * t), torch.cos(2 * t) - 1, 0.5 * torch.sin(t)], -1)[..., 0, :]
    joints = (centres[:, None] + offsets)[None].expand(T, 2, 21, 3) + path[:, :, None] \
        + 0.003 * torch.randn(T, 2, 21, 3, generator=g)
    joints = joints.reshape(1, T, N, 3)
    f = 0.75 * args.width
    K = torch.tensor([[[f, 0.0, args.width / 2], [0.0, f, args.height / 2], [0.0, 0.0, 1.0]]])
    z0 = torch.randn(1, 16, args.height // 8, args.width // 8, generator=g)
    torch.manual_seed(0)
    model = HandControlModule(occlusion=getattr(args, "mode", "upstream"))
    return model.to(device), joints.to(device), K.to(device), z0.to(device)


def _clock(kind: str):
    return time.process_time if kind == "cpu" else time.perf_counter


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fns: dict, device, repeats, clock=time.perf_counter) -> dict:
    """Best-of-``repeats`` seconds per function, runs interleaved so that load from other jobs hits all alike."""
    for fn in fns.values():
        fn()  # warm-up
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            start = clock()
            fn()
            _sync(device)
            best[name] = min(best[name], clock() - start)
    return best


def _no_grad(fn):
    def run(*args):
        with torch.no_grad():
            return fn(*args)

    return run


def fwd_bwd(impl, model, joints, K, z0):
    model.zero_grad(set_to_none=True)
    control, motion = impl(model, joints, K, z0)
    (control.square().mean() + motion.square().mean()).backward()


def ours(model, joints, K, z0):
    return model(joints, K, z0)


def ours_signal(model, joints, K, z0):
    return model.control_signal(joints, K, z0)


IMPLS = {"ours": ours, "dense": dense_control, "ours-signal": ours_signal, "dense-signal": dense_signal}


def measure_memory(args, name: str) -> float:
    """Peak memory (MiB) one forward+backward of implementation ``name`` adds (see module docstring)."""
    device = torch.device(args.device)
    model, joints, K, z0 = make_case(args, device)
    if device.type == "cuda":
        _sync(device)
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fwd_bwd(IMPLS[name], model, joints, K, z0)
        _sync(device)
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    # No warm-up at full size: freed memory stays in the process, so a second run would hide the peak.
    small = make_case(argparse.Namespace(frames=5, height=64, width=64, mode=args.mode), device)
    fwd_bwd(IMPLS[name], *small)  # one-time set-up (thread pools, kernels) on a tiny case
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    base, peak, done = rss(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.0002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    fwd_bwd(IMPLS[name], model, joints, K, z0)
    done.set()
    thread.join()
    return (max(peak[0], rss()) - base) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    parser.add_argument("--mode", choices=["upstream", "paper"], default="upstream",
                        help="module mode (paper: per-frame propagation, windowed splats + dense fusion)")
    parser.add_argument("--memory-of", choices=sorted(IMPLS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_of:
        print(json.dumps({"peak_mib": measure_memory(args, args.memory_of)}))
        return 0

    device = torch.device(args.device)
    model, joints, K, z0 = make_case(args, device)
    with torch.no_grad():
        a = ours(model, joints, K, z0)
        b = dense_control(model, joints, K, z0)
        sa = ours_signal(model, joints, K, z0)[0]
        sb = dense_signal(model, joints, K, z0)[0]
    diff = max((a[0] - b[0]).abs().max().item(), (a[1] - b[1]).abs().max().item())
    diff_structure = (sa - sb).abs().max().item()
    case = (model, joints, K, z0)
    clock = _clock(args.clock)
    fwd = timed({n: (lambda f=f: _no_grad(f)(*case)) for n, f in IMPLS.items()}, device, args.repeats, clock)
    both = timed({n: (lambda f=f: fwd_bwd(f, *case)) for n, f in IMPLS.items()}, device, args.repeats, clock)
    results = {}
    for name in IMPLS:
        if device.type == "cuda":
            mem = (measure_memory(args, name),) * 2
        else:
            cmd = [sys.executable, __file__, "--memory-of", name, "--device", args.device, "--mode", args.mode,
                   "--frames", str(args.frames), "--height", str(args.height), "--width", str(args.width)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            mem = tuple(
                json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout)["peak_mib"]
                for env in (None, {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"})
            )
        results[name] = (fwd[name], both[name], *mem)

    T, h, w = args.frames, args.height // 8, args.width // 8
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, {args.clock} clock, "
          f"best of {args.repeats}; {args.mode} mode, B=1, T={T}, N=42, latent {h}x{w}, C=16, T'={1 + (T - 1) // 4}")
    print(f"{'':14}{'forward ms':>12}{'fwd+bwd ms':>12}{'peak MiB':>10}{'peak MiB (mmap>=64K)':>22}")
    for name, (fwd, both, mem, mem_exact) in results.items():
        print(f"{name:14}{fwd * 1e3:12.1f}{both * 1e3:12.1f}{mem:10.1f}{mem_exact:22.1f}")
    for label, a_, b_ in (("whole module", "ours", "dense"), ("control signal", "ours-signal", "dense-signal")):
        (fo, bo, mo, me), (fd, bd, md, mde) = results[a_], results[b_]
        print(f"{label}: speed-up forward {fd / fo:.1f}x, forward+backward {bd / bo:.1f}x; "
              f"peak memory ours/dense {mo / md:.3f} (mmap>=64K: {me / mde:.3f})")
    print(f"max abs difference: outputs {diff:.2e}, structure map {diff_structure:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
