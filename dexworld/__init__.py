"""dexworld: sparse 3D hand joints as control for video world models of dexterous hands."""

import os

# Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning. The control module runs many small
# kernels; with spinning threads on a busy CPU its backward pass was measured 5x slower (docs/benchmarks.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
