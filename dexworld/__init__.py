"""dexworld: sparse 3D hand joints as control for video world models of dexterous hands."""

__version__ = "0.1.0"
