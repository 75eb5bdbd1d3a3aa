"""The Wan 2.1 I2V backbone with hand control: patch widening, condition, LoRA, presets, the pipeline, conversion.

``adapter`` (wiring the control module into diffusers' Wan transformer) ← ``presets`` (tiny / 14B components) ←
``pipeline`` (``HandControlPipeline``) ← ``checkpoint`` (loading a dexworld checkpoint folder) and ``convert`` (the
authors' released weights). ``scaling`` estimates memory and compute. Imports the control room, nothing above it.
"""
