"""Occlusion-aware hand control module: sparse 3D hand joints → control volume and motion features.

See ``docs/control_module.md`` for the equations. Three modes (``occlusion=``):

- ``"upstream"``: the module the paper's authors published (their projection, a missing joint encoded as a zero
  joint, hard 0/1 visibility, coordinate encodings averaged, λ constant), to load their weights;
- ``"paper"``: the paper's equations as written (eq. 6 MLP on [γ(u), γ(v), γ(d); E_id], eq. 2 plain Gaussian
  spatial term, eqs. 4–5 motion features per input frame, compressed in time afterwards);
- ``"soft"``: a dexworld variant between the two (the authors' layout — MLP on γ only, heatmaps and disparities
  compressed before the propagation — with a soft visibility whose spatial term has a flat core of the hard
  radius, so that it tends to the authors' hard rule; coordinate encodings concatenated, λ learnable).

All three run the fusion on the active cells only (``fusion.propagate_and_fuse``); ``paper`` computes its motion
features beforehand (per input frame, with windowed splats) and hands them to it.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from worldmodel.control.baselines import copy_point_tracks
from worldmodel.control.fusion import propagate_and_fuse

from . import geometry as geo

__all__ = ["HandControlModule", "MODES", "UPSTREAM_NAMES"]

MODES = ("soft", "upstream", "paper")

# The authors' parameter names → ours.
UPSTREAM_NAMES = {
    "coord_encoder.0.weight": "coord_mlp.0.weight",
    "coord_encoder.0.bias": "coord_mlp.0.bias",
    "coord_encoder.2.weight": "coord_mlp.2.weight",
    "coord_encoder.2.bias": "coord_mlp.2.bias",
    "joint_id_embed.weight": "joint_embedding.weight",
    "causal_conv1.weight": "fuse_in.weight",
    "causal_conv1.bias": "fuse_in.bias",
    "causal_conv2.weight": "fuse_out.weight",
    "causal_conv2.bias": "fuse_out.bias",
    "cross_norm.weight": "norm.weight",
    "cross_norm.bias": "norm.bias",
}
# The authors' constructor keys → ours (the rest share names or do not exist upstream).
_UPSTREAM_CONFIG = {
    "vae_channels": "latent_channels",
    "downsample_rate": "downsample",
    "occlusion_dist_threshold": "occlusion_radius",
}
_UPSTREAM_IGNORED = {"canvas_height", "canvas_width", "note"}


class HandControlModule(ModelMixin, ConfigMixin):
    """Joints (B, T, N, 3), K, z0 (B, C, h, w) → control volume (B, out, T', h, w), motion (B, C, T', h, w).

    T' = 1 + (T - 1) // temporal_stride. ~22 k parameters at the paper's sizes.
    """

    @register_to_config
    def __init__(
        self,
        num_joints: int = 42,
        embed_dim: int = 64,
        latent_channels: int = 16,
        output_dim: int = 16,
        downsample: int = 8,
        heatmap_sigma: float = 2.0,
        heatmap_radius: int | None = 12,
        propagate_scale: float = 5.0,
        occlusion: str = "soft",
        occlusion_radius: float = 1.0,
        occlusion_depth_margin: float = 1e-3,
        soft_gamma: float = 100.0,
        soft_tau: float = 1.0,
        coord_fusion: str | None = None,
        temporal_stride: int = 4,
        min_depth: float = 0.2,
        disparity_scale: float = 0.2,
        encoding_period: float = 10000.0,
        softmax_floor: float = 1e-6,
        use_occlusion: bool = True,
        use_depth_weighting: bool = True,
        use_propagation: bool = True,
        use_geometric_embedding: bool = True,
        point_tracks_2d: bool = False,
        train_depth_scale: bool | None = None,
    ):
        # Ablation switches (all default to the full module): use_occlusion=False → visibility 1 (no OCA gating);
        # use_depth_weighting=False → λ·disparity dropped from the propagation softmax (no OP depth order);
        # use_propagation=False → no motion features (HandControlledWan keeps the plain I2V condition);
        # use_geometric_embedding=False → structure map from the joint-id embedding only (no 3DGE);
        # point_tracks_2d=True → Wan-Move style baseline: zero control volume, motion = baselines.copy_point_tracks.
        # train_depth_scale: whether λ (depth_scale) is trained; default: not in upstream mode, where the authors'
        # module holds it at the constant 5 (fine-tuning their weights keeps it), yes in the other modes.
        super().__init__()
        if occlusion not in MODES:
            raise ValueError(f"occlusion must be one of {MODES}, got {occlusion!r}")
        if embed_dim % 2 or embed_dim < 4:
            raise ValueError(f"embed_dim must be an even number >= 4, got {embed_dim}")
        if coord_fusion is None:
            coord_fusion = "mean" if occlusion == "upstream" else "concat"
        if coord_fusion not in ("mean", "concat"):
            raise ValueError(f"coord_fusion must be 'mean', 'concat' or None, got {coord_fusion!r}")
        if occlusion == "paper" and coord_fusion != "concat":
            raise ValueError("occlusion='paper' concatenates the coordinate encodings (eq. 6); coord_fusion must be "
                             f"'concat' or None, got {coord_fusion!r}")
        if heatmap_radius is not None and heatmap_radius < 0:
            raise ValueError(f"heatmap_radius must be >= 0 or None, got {heatmap_radius}")
        self.coord_fusion = coord_fusion
        half = embed_dim // 2
        coord_in = half if coord_fusion == "mean" else 3 * half
        if occlusion == "paper":  # eq. 6: E = MLP([γ(u), γ(v), γ(d); E_id]), the whole embedding from the MLP
            self.coord_mlp = nn.Sequential(nn.Linear(coord_in + half, embed_dim), nn.SiLU(),
                                           nn.Linear(embed_dim, embed_dim))
        else:  # E = [MLP(γ), E_id]
            self.coord_mlp = nn.Sequential(nn.Linear(coord_in, half), nn.SiLU(), nn.Linear(half, half))
        self.joint_embedding = nn.Embedding(num_joints, half)
        self.fuse_in = nn.Conv3d(embed_dim + latent_channels, embed_dim, kernel_size=(3, 1, 1))
        self.fuse_out = nn.Conv3d(embed_dim, output_dim, kernel_size=(3, 1, 1))
        self.norm = nn.LayerNorm(output_dim)
        self.train_depth_scale = occlusion != "upstream" if train_depth_scale is None else bool(train_depth_scale)
        self.depth_scale = nn.Parameter(torch.tensor(float(propagate_scale)), requires_grad=self.train_depth_scale)

    def requires_grad_(self, requires_grad: bool = True) -> HandControlModule:
        """As ``nn.Module.requires_grad_``, except that λ stays frozen unless ``train_depth_scale``."""
        super().requires_grad_(requires_grad)
        self.depth_scale.requires_grad_(requires_grad and self.train_depth_scale)
        return self

    # ------------------------------------------------------------------ loading the authors' weights
    @classmethod
    def from_upstream(cls, state_dict: Mapping[str, torch.Tensor], **config) -> HandControlModule:
        """Build an ``occlusion="upstream"`` module from the authors' weights (``state.`` prefix optional).

        ``config`` takes our constructor keys or the authors' (``vae_channels``, ``downsample_rate``,
        ``occlusion_dist_threshold``; ``canvas_*`` and ``note`` are ignored) — e.g. their JSON config.
        """
        cfg: dict = {}
        for key, value in config.items():
            if key in _UPSTREAM_IGNORED:
                continue
            cfg[_UPSTREAM_CONFIG.get(key, key)] = value
        cfg.setdefault("occlusion", "upstream")
        stripped = {k.removeprefix("state."): v for k, v in state_dict.items()}
        unknown = sorted(set(stripped) - set(UPSTREAM_NAMES))
        missing = sorted(set(UPSTREAM_NAMES) - set(stripped))
        if unknown or missing:
            raise ValueError(f"state_dict: unexpected keys {unknown}, missing keys {missing} (authors' names)")
        if "num_joints" not in cfg:
            cfg["num_joints"] = stripped["joint_id_embed.weight"].shape[0]
        model = cls(**cfg)
        ours = {UPSTREAM_NAMES[k]: v for k, v in stripped.items()}
        ours["depth_scale"] = model.depth_scale.detach().clone()
        model.load_state_dict(ours, strict=True)
        return model

    @staticmethod
    def upstream_config(metadata: Mapping[str, str]) -> dict:
        """The constructor values stored as JSON under ``config`` in a safetensors file's metadata."""
        return json.loads(metadata["config"])

    # ------------------------------------------------------------------ checks
    def _check_inputs(self, joints, K, z0, valid):
        cfg = self.config
        if not isinstance(joints, torch.Tensor) or joints.ndim != 4 or joints.shape[-1] != 3:
            raise ValueError(f"joints must be a tensor (B, T, N, 3), got {_shape(joints)}")
        b, t, n, _ = joints.shape
        if n != cfg.num_joints:
            raise ValueError(f"joints must have N = num_joints = {cfg.num_joints} joints (B, T, N, 3), got {n}")
        if t < 1 or (t - 1) % cfg.temporal_stride:
            raise ValueError(
                f"joints must have T = {cfg.temporal_stride}k+1 frames (B, T, N, 3), got T = {t}"
            )
        if not isinstance(z0, torch.Tensor) or z0.ndim != 4 or z0.shape[0] != b:
            raise ValueError(f"z0 must be a tensor (B={b}, C, h, w), got {_shape(z0)}")
        if z0.shape[1] != cfg.latent_channels:
            raise ValueError(f"z0 must have C = latent_channels = {cfg.latent_channels} channels, got {z0.shape[1]}")
        if not isinstance(K, torch.Tensor) or K.shape[-2:] != (3, 3) or K.ndim not in (3, 4):
            raise ValueError(f"K must be a tensor (B, 3, 3) or (B, T, 3, 3), got {_shape(K)}")
        if K.shape[0] != b or (K.ndim == 4 and K.shape[1] != t):
            raise ValueError(f"K must be (B={b}, 3, 3) or (B={b}, T={t}, 3, 3), got {tuple(K.shape)}")
        K64 = K.detach().double()
        if not torch.isfinite(K64).all():
            raise ValueError("K must be finite pixel intrinsics (B, 3, 3) or (B, T, 3, 3); it has NaN/inf entries")
        if (torch.linalg.cond(K64) > 1e12).any():
            raise ValueError("K must be invertible pixel intrinsics; got a singular matrix")
        if valid is None:
            valid = torch.ones(b, t, n, dtype=torch.bool, device=joints.device)
        else:
            if not isinstance(valid, torch.Tensor) or tuple(valid.shape) != (b, t, n):
                raise ValueError(f"valid must be a tensor (B, T, N) = ({b}, {t}, {n}), got {_shape(valid)}")
            valid = valid.to(device=joints.device, dtype=torch.bool)
        bad = valid & ~torch.isfinite(joints.detach()).all(-1)
        if bad.any():
            idx = tuple(bad.nonzero()[0].tolist())
            raise ValueError(f"joints has NaN/inf coordinates at (b, t, n) = {idx} marked valid")
        return valid

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        joints: torch.Tensor,
        K: torch.Tensor,
        z0: torch.Tensor,
        valid: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Control volume (B, output_dim, T', h, w) and motion features (B, C, T', h, w).

        joints (B, T, N, 3) camera frame, metres; K (B, 3, 3) or (B, T, 3, 3) pixel intrinsics of the canvas;
        z0 (B, C, h, w) latent of the reference frame (its size sets the grid); valid (B, T, N) bool, default
        all valid. Their coordinates are ignored (NaN allowed). Invalid joints contribute nothing, except in
        ``upstream`` mode, which encodes them as the authors' data pipeline does: coordinates zero (cell (0, 0),
        the largest disparity), taking part like any other joint.
        """
        if self.config.point_tracks_2d:
            return self._point_tracks(joints, K, z0, valid)
        cfg = self.config
        if cfg.occlusion == "paper":  # motion features per input frame first, then the active-cell fusion
            rows, gy, gx, motion, empty = self._paper_features(joints, K, z0, valid)
            zero = motion.new_zeros(motion.shape[:3])
            return propagate_and_fuse(
                rows, gy, gx, zero, zero[:, :1], cfg.softmax_floor, self.fuse_in, self.fuse_out, self.norm,
                cfg.temporal_stride, empty, motion=motion,
            )
        values, gy, gx, floor_feat, floor_sum, empty = self._features(joints, K, z0, valid)
        return propagate_and_fuse(
            values, gy, gx, floor_feat, floor_sum, cfg.softmax_floor, self.fuse_in, self.fuse_out, self.norm,
            cfg.temporal_stride, empty,
        )

    def control_signal(
        self,
        joints: torch.Tensor,
        K: torch.Tensor,
        z0: torch.Tensor,
        valid: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Structure map (B, embed_dim, T', h, w) and motion features (B, C, T', h, w), before the fusion."""
        if self.config.occlusion == "paper":
            rows, gy, gx, motion, _ = self._paper_features(joints, K, z0, valid)
            structure = geo.splat_separable(rows[..., : self.config.embed_dim], gy, gx, self.config.temporal_stride)
            return structure, motion
        values, gy, gx, floor_feat, floor_sum, _ = self._features(joints, K, z0, valid)
        maps = geo.splat_separable(values, gy, gx, self.config.temporal_stride)  # (B, E+C+2, T', h, w)
        structure, weighted_feat, weight_sum, opacity = maps.split([self.config.embed_dim, z0.shape[1], 1, 1], 1)
        motion = geo.propagate(opacity, weighted_feat, weight_sum, floor_feat, floor_sum, self.config.softmax_floor)
        return structure, motion

    def _point_tracks(self, joints, K, z0, valid):
        """Wan-Move style baseline: zero control volume, motion (B, C, T', h, w) = 2D tracks copied in z0."""
        cfg = self.config
        valid, u, v, _ = self._project(joints, K, z0, valid)
        motion = copy_point_tracks(z0, u, v, valid, cfg.temporal_stride)
        control = z0.new_zeros(joints.shape[0], cfg.output_dim, *motion.shape[2:])
        return control, motion

    def _project(self, joints, K, z0, valid):
        """Checked valid (B, T, N) and latent coordinates u, v, disparity (B, T, N); invalid joints at the origin."""
        cfg = self.config
        valid = self._check_inputs(joints, K, z0, valid)
        b, t = joints.shape[:2]
        joints = torch.where(valid[..., None], joints, torch.zeros_like(joints)).to(z0.dtype)
        upstream = cfg.occlusion == "upstream"
        if upstream:  # the authors' dataset zero-fills a missing joint, which then takes part like any other
            valid = torch.ones_like(valid)
        K = K.to(z0.dtype)
        if K.ndim == 3:
            K = K[:, None].expand(b, t, 3, 3)
        u, v, disp = geo.project_to_latent(joints, geo.scale_intrinsics(K, cfg.downsample), cfg.min_depth,
                                           cfg.disparity_scale, clamp="divisor" if upstream else "point")
        return valid, u, v, disp

    def _sources(self, joints, K, z0, valid):
        """What every mode computes first: checked valid (B, T, N), disparity (B, T, N), joint embeddings
        (B, T, N, E), Gaussian factors (B, T, N, h), (B, T, N, w), source features (B, N, C), empty elements (B,)."""
        cfg = self.config
        valid, u, v, disp = self._project(joints, K, z0, valid)
        b, t, n, _ = joints.shape
        h, w = z0.shape[-2:]
        empty = ~valid.flatten(1).any(1)  # (B,)
        if empty.any():
            warnings.warn(
                f"HandControlModule: every joint is invalid in batch element(s) {empty.nonzero()[:, 0].tolist()}; "
                "their motion features and control volume are zero",
                stacklevel=4,
            )

        # Geometric embedding per joint and frame (eq. 6): sinusoidal (u, v, d) and the joint-id embedding.
        half = cfg.embed_dim // 2
        enc = [geo.sinusoidal_encoding(x, half, cfg.encoding_period) for x in (u, v, disp)]
        enc = (enc[0] + enc[1] + enc[2]) / 3.0 if self.coord_fusion == "mean" else torch.cat(enc, dim=-1)
        ids = self.joint_embedding.weight.expand(b, t, n, half)
        if cfg.occlusion == "paper":  # E = MLP([γ(u), γ(v), γ(d); E_id]); the ablation without 3DGE zeroes γ
            enc = enc if cfg.use_geometric_embedding else torch.zeros_like(enc)
            emb = self.coord_mlp(torch.cat([enc, ids], dim=-1))
        else:  # E = [MLP(γ), E_id]
            coord = self.coord_mlp(enc)
            if not cfg.use_geometric_embedding:
                coord = torch.zeros_like(coord)
            emb = torch.cat([coord, ids], dim=-1)

        gy = geo.gaussian_factors(v, h, cfg.heatmap_sigma, cfg.heatmap_radius)  # (B, T, N, h)
        gx = geo.gaussian_factors(u, w, cfg.heatmap_sigma, cfg.heatmap_radius)  # (B, T, N, w)

        # Source features: occlusion-gated heatmap pooling of z0 at frame 0 (eq. 2–3).
        if cfg.occlusion == "upstream":
            vis = geo.hard_visibility(
                u[:, 0], v[:, 0], disp[:, 0], valid[:, 0], cfg.occlusion_radius, cfg.occlusion_depth_margin
            )
        elif cfg.occlusion == "paper":  # eq. 2 as written: plain Gaussian spatial term, sigmoid of the depth lead
            vis = geo.soft_visibility(u[:, 0], v[:, 0], disp[:, 0], valid[:, 0], cfg.soft_gamma, cfg.soft_tau, 0.0, 0.0)
        else:
            vis = geo.soft_visibility(
                u[:, 0], v[:, 0], disp[:, 0], valid[:, 0], cfg.soft_gamma, cfg.soft_tau,
                cfg.occlusion_radius, cfg.occlusion_depth_margin,
            )
        if not cfg.use_occlusion:
            vis = torch.ones_like(vis)
        src = geo.pool_source_features(z0, gy[:, 0], gx[:, 0]) * (vis * valid[:, 0])[..., None]  # (B, N, C)
        if not cfg.use_propagation:
            src = torch.zeros_like(src)
        return valid, disp, emb, gy, gx, src, empty

    def _depth_weights(self, disp: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """e_k = exp(λ (d_k − max d)) (B, F, N) over the joints present in each frame F; 0 when absent."""
        scaled = self.depth_scale.to(disp.dtype) * disp if self.config.use_depth_weighting else torch.zeros_like(disp)
        scaled = torch.where(present, scaled, torch.full_like(scaled, -torch.inf))
        top = scaled.amax(dim=-1, keepdim=True)
        return torch.exp(scaled - torch.where(torch.isfinite(top), top, torch.zeros_like(top)))

    def _features(self, joints, K, z0, valid):
        """Per (frame, joint) rows to splat (B, T, N, E+C+2) = weight · [E, ε f, ε, 1], Gaussian factors
        (B, T, N, h), (B, T, N, w), propagation floors (B, C, T'), (B, 1, T'), elements without valid joints (B,)."""
        cfg = self.config
        valid, disp, emb, gy, gx, src, empty = self._sources(joints, K, z0, valid)
        t = joints.shape[1]
        dtype = z0.dtype

        # Depth weights per latent frame, from the disparities compressed over the valid frames of its group.
        stride = cfg.temporal_stride
        disp_c, present = geo.compress_masked_mean(disp, valid, stride)  # (B, T', N)
        e = self._depth_weights(disp_c, present)
        floor_feat = torch.einsum("btn,bnc->bct", e, src)
        floor_sum = e.sum(-1)[:, None]

        # One splat carries structure map (eq. 7), Σ H e f, Σ H e and opacity Σ H, temporally compressed.
        weight = geo.frame_weights(t, stride, dtype, joints.device)[None, :, None] * valid.to(dtype)  # (B,T,N)
        latent_of = torch.div(torch.arange(t, device=joints.device) + stride - 1, stride, rounding_mode="floor")
        e_t = e[:, latent_of.clamp(max=e.shape[1] - 1)]  # (B, T, N): each frame's latent-frame depth weight
        feats = torch.cat(
            [emb, e_t[..., None] * src[:, None], e_t[..., None], torch.ones_like(e_t)[..., None]], dim=-1
        )
        return feats * weight[..., None], gy, gx, floor_feat, floor_sum, empty

    def _paper_features(self, joints, K, z0, valid):
        """Paper mode: rows to splat (B, T, N, E+C+2) = weight · [E, 0, 0, 1] (structure map and opacity),
        Gaussian factors, motion features (B, C, T', h, w), empty elements (B,).

        Eqs. 4–5 per input frame t — F_t = O_t · Σ_k softmax_k(log(H_{t,k} + ε) + λ d_{t,k}) f_k over the joints
        valid in frame t — then compressed in time (frame 0 kept, groups of ``temporal_stride`` averaged)."""
        cfg = self.config
        valid, disp, emb, gy, gx, src, empty = self._sources(joints, K, z0, valid)
        t = joints.shape[1]
        dtype = z0.dtype
        e = self._depth_weights(disp, valid)  # (B, T, N)
        w = valid.to(dtype)[..., None]
        sums = torch.cat([e[..., None] * src[:, None], e[..., None], torch.ones_like(e)[..., None]], dim=-1) * w
        maps = geo.splat_separable(sums, gy, gx, stride=1)  # (B, C+2, T, h, w): Σ H e f, Σ H e, opacity
        weighted_feat, weight_sum, opacity = maps.split([src.shape[-1], 1, 1], 1)
        floor_feat = torch.einsum("btn,bnc->bct", e, src)
        motion = geo.propagate(opacity, weighted_feat, weight_sum, floor_feat, e.sum(-1)[:, None], cfg.softmax_floor)
        motion = geo.compress_frames(motion, cfg.temporal_stride, dim=2).contiguous()
        weight = geo.frame_weights(t, cfg.temporal_stride, dtype, joints.device)[None, :, None, None] * w
        rows = torch.cat([emb, torch.zeros_like(sums[..., :-1]), torch.ones_like(sums[..., -1:])], dim=-1) * weight
        return rows, gy, gx, motion, empty

    def fuse(self, structure: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        """Fusion (eq. 8), evaluated densely on every cell: causal Conv3d → SiLU → causal Conv3d → SiLU → LayerNorm.

        ``forward`` computes the same on the active cells only (``fusion.propagate_and_fuse``); this dense form is
        the reference for it and a tool for inspecting ``control_signal``'s maps.
        """
        x = torch.cat([structure, motion], dim=1)
        x = F.silu(self.fuse_in(F.pad(x, (0, 0, 0, 0, 2, 0), mode="replicate")))
        x = F.silu(self.fuse_out(F.pad(x, (0, 0, 0, 0, 2, 0), mode="replicate")))
        return self.norm(x.movedim(1, -1)).movedim(-1, 1)


def _shape(x) -> str:
    return str(tuple(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__
