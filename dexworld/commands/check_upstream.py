"""``dexworld check-upstream PATH``: compare the control module with the authors' reference vector."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``check-upstream`` subcommand."""
    p = subparsers.add_parser(
        "check-upstream",
        help="compare HandControlModule (upstream mode) with a reference vector file of the authors' module",
    )
    p.add_argument("path", help="safetensors file with joints, K, z0, state.*, out, occ_latent (optional present)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="precision to run the module in (default float64, as the reference files were made)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the max abs differences; 0 when both are within tolerance, 1 otherwise."""
    import torch

    from worldmodel.control.upstream import check_reference

    result = check_reference(args.path, dtype=getattr(torch, args.dtype))
    for name, d in result["runs"].items():
        print(f"joints {name}:")
        print(f"  control volume (out):        max abs diff {d['out']:.3e}")
        print(f"  motion features (occ_latent): max abs diff {d['occ_latent']:.3e}")
    verdict = "PASS" if result["passed"] else "FAIL"
    print(f"{verdict} (tolerance {result['tolerance']:.0e}, output shape {result['shape']})")
    return 0 if result["passed"] else 1
