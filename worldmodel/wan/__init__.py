"""The Wan 2.1 I2V backbone with hand control: patch widening, condition, LoRA, presets, the pipeline, conversion.

``adapter`` (wiring the control module into diffusers' Wan transformer), ``prompt`` (the tiny text side) and
``sampling`` (what a checkpoint records about sampling) ← ``presets`` (tiny / 14B components) ← ``checkpoint`` (the
training checkpoint folder) ← ``pretrained`` (the pipeline folder) ← ``pipeline`` (``HandControlPipeline`` with
``from_pretrained`` / ``save_pretrained``); ``convert`` (the authors' released weights) writes through
``pretrained``. ``scaling`` estimates memory and compute. Imports the control room, nothing above it.
"""
