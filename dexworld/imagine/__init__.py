"""``dexworld imagine``: work items, sources, sharding and the writer of imagined LeRobot datasets.

It lives in the CLI layer because it joins ``sim_bridge`` (sources, LeRobot writing) and ``worldmodel`` (sampling,
quality), which never import each other.
"""
