"""Where does a VAE lose a scene's colour? Flat-colour clips through its encoder and decoder, frame 0 against the rest.

The causal Wan VAE encodes and decodes frame 0 alone (only the current-time taps of each causal convolution), and
frames 1–4 as one chunk with frame 0 cached. For each flat colour this prints the colour decoded on frame 0 and on
frame 4 of a 5-frame clip, and the closest the decoder gets when the latent itself is optimised (Adam on z, decoder
frozen): if even that misses the colour, the decoder as trained cannot make it from latents near the encoder's
(a decoder trained further may; docs/results.md, "Seventeenth attempt"). It also prints how far each colour's
latent is from flat grey's, on latent frame 0 (frame 0 alone) and latent frame 1 (frames 1–4): ‖z − z_grey‖ / ‖z_grey‖
in units of the VAE's ``latents_std``. A colour whose frame-0 latent sits near grey's is lost in the encoder, before
any decoder sees it ("Eighteenth attempt").

    .venv/bin/python benchmarks/vae_flat_colours.py --vae worldmodel/checkpoints/tiny-sim/vae \\
        worldmodel/checkpoints/tiny-sim-vae-4x
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

COLOURS = {"blue": (96, 70, 180), "orange": (211, 154, 115), "green": (40, 120, 60), "grey": (128, 128, 128)}


def _rgb(video: torch.Tensor, t: int) -> tuple[int, ...]:
    return tuple(int(v) for v in ((video[0, :, t].mean((-1, -2)) + 1) * 127.5).round())


def _flat_clip(colour: tuple[int, int, int], size: int = 32) -> torch.Tensor:
    c = torch.tensor(colour, dtype=torch.float32) / 127.5 - 1
    return c.view(1, 3, 1, 1, 1).expand(1, 3, 5, size, size).contiguous()


def latent_distance_from_grey(vae, colour: tuple[int, int, int], size: int = 32) -> tuple[float, float]:
    """‖z − z_grey‖ / ‖z_grey‖ of a flat 5-frame clip's latents, in ``latents_std`` units, on latent frames 0 and 1."""
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    with torch.no_grad():
        z, grey = (vae.encode(_flat_clip(c, size)).latent_dist.mode() / std for c in (colour, COLOURS["grey"]))
    return tuple(float((z[:, :, t] - grey[:, :, t]).norm() / grey[:, :, t].norm()) for t in (0, 1))


def flat_colour_report(vae, colour: tuple[int, int, int], size: int = 32, z_steps: int = 150) -> dict:
    """Decoded colour of frames 0 and 4 of a flat 5-frame clip: from the encoder's latent and from the best latent."""
    x = _flat_clip(colour, size)
    with torch.no_grad():
        z0 = vae.encode(x).latent_dist.mode()
        encoded = vae.decode(z0).sample
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=0.05)
    for _ in range(z_steps):
        loss = (vae.decode(z).sample - x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        best = vae.decode(z).sample
    return {"encoded": (_rgb(encoded, 0), _rgb(encoded, 4)), "best latent": (_rgb(best, 0), _rgb(best, 4))}


def main(argv=None) -> int:
    from diffusers import AutoencoderKLWan

    from dexworld.argtypes import nonnegative_int

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vae", nargs="+", type=Path, required=True, help="AutoencoderKLWan folders")
    ap.add_argument("--z-steps", type=nonnegative_int, default=150, help="Adam steps on the latent")
    args = ap.parse_args(argv)
    for folder in args.vae:
        if not (folder / "config.json").is_file():
            raise SystemExit(f"--vae {folder}: no config.json (expected a diffusers AutoencoderKLWan folder)")
    torch.manual_seed(0)
    print(f"{'vae':<40} {'colour':<24} {'encoded: frame 0':<18} {'frame 4':<16} {'best z: frame 0':<18} "
          f"{'frame 4':<16} z from grey: latent frame 0, 1")
    for folder in args.vae:
        vae = AutoencoderKLWan.from_pretrained(folder).eval().requires_grad_(False)
        for name, colour in COLOURS.items():
            r = flat_colour_report(vae, colour, z_steps=args.z_steps)
            (e0, e4), (b0, b4) = r["encoded"], r["best latent"]
            d0, d1 = latent_distance_from_grey(vae, colour)
            print(f"{str(folder)[-40:]:<40} {name + str(colour):<24} {e0!s:<18} {e4!s:<16} {b0!s:<18} {b4!s:<16} "
                  f"{d0:.2f}, {d1:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
