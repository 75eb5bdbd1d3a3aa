"""Training the hand-controlled Wan model: clip dataset, flow-matching trainer, distributed helpers, VAE stage, cache.

Depends on the ``wan`` and ``control`` rooms; nothing below imports it.
"""
