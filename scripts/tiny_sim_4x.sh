#!/usr/bin/env bash
# The 4x-VAE tiny-sim recipe (tenth attempt, docs/results.md), staged and resumable:
#   1. training data: 150 clips per hand (seed 0) and 300 one-scene-per-clip clips per hand (seed 3000)
#   2. stage 1: the 4x VAE (configs/tiny_sim_4x_wide.json; its run also writes the 288-wide transformer init)
#   3. the hand-loss fine-tune of the whole VAE on both training sets (h8)
#   4. stage 2 (transformer + control module) on h8's latents: 900 steps on the first plan's schedule (transformer LR
#      constant, control LR on a cosine to 9500), then to step 5500 with both LRs on a cosine to zero at 5500
# A finished model step leaves a .done marker and is skipped; stage 2 resumes from its latest checkpoint. Run it again
# after an interruption. Everything is written under OUT (default outputs/tiny_sim10) and outputs/tiny_sim/data.
# VAE_ONLY=1 stops after step 3 (scripts/tiny_sim_4x_fine.sh puts another stage 2 on the same VAE); DATA_ONLY=1
# after step 1.
#
#   OMP_NUM_THREADS=2 MUJOCO_GL=egl bash scripts/tiny_sim_4x.sh [OUT]
# About 15–20 min of data, 45 min stage 1, 25 min fine-tune and ~2 h of stage 2 (1.3 s/step) on 2 cores.
set -euo pipefail
# OUT and BIN as given are relative to the caller's folder; the defaults to the repository.
OUT=$(realpath -m -- "${1:-$(dirname "$0")/../outputs/tiny_sim10}")
BIN=$(realpath -m -- "${BIN:-$(dirname "$0")/../.venv/bin}")
cd "$(dirname "$0")/.."
DATA=outputs/tiny_sim/data
export HF_HUB_OFFLINE=1 MUJOCO_GL=${MUJOCO_GL:-egl}
[ -x "$BIN/dexworld" ] || { echo "tiny_sim_4x.sh: $BIN/dexworld not found; run 'make venv' first" >&2; exit 2; }
mkdir -p "$OUT"
step() { echo "$(date -u +%FT%TZ) == $*"; }

step data
synth() {  # synth NAME EPISODES PER_SCENE SEED; synth leaves clips already on disk alone, so a rerun is cheap
  for emb in inspire_right dex3_right; do
    "$BIN/dexworld" synth --embodiment "$emb" --episodes "$2" --episodes-per-scene "$3" --frames 17 --size 128 \
      --scene-preset tiny-sim --hand-style detailed --visibility --seed "$4" --out "$DATA/$1/$emb" --no-progress
  done
}
synth train 150 8 0
synth train_scenes 300 1 3000
for s in train train_scenes; do for emb in inspire_right dex3_right; do
  mkdir -p "$DATA/train_mix/$s/$emb" && ln -sf "$PWD/$DATA/$s/$emb/"*.h5 "$DATA/train_mix/$s/$emb/"
done; done
[ "${DATA_ONLY:-0}" = 1 ] && { step "data ready: $DATA"; exit 0; }

step "stage 1: the 4x VAE"
if [ ! -f "$OUT/vae_run/.done" ]; then
  "$BIN/dexworld" train --config configs/tiny_sim_4x_wide.json --data "$DATA/train" --out "$OUT/vae_run" \
    --steps 1 --overwrite --no-progress   # --steps 1: stage 2 starts in step 4, on the fine-tuned VAE
  touch "$OUT/vae_run/.done"
fi

step "hand-loss fine-tune of the VAE"
if [ ! -f "$OUT/h8/.done" ]; then
  "$BIN/python" scripts/vae_finetune_decoder.py --vae "$OUT/vae_run/base/vae" --train-encoder \
    --data "$DATA/train_mix" --out "$OUT/h8" --steps 2000 --long-steps 300 --hand-weight 8 --hand-crop 0.5 \
    --lr 5e-4 --save-every 250
  touch "$OUT/h8/.done"
fi

[ "${VAE_ONLY:-0}" = 1 ] && { step "VAE ready: $OUT/h8/vae"; exit 0; }

step "stage 2 on the fine-tuned VAE"
if [ ! -d "$OUT/base" ]; then  # the stage-1 run's base with h8's VAE, put in place in one rename
  rm -rf "$OUT/base.tmp"
  cp -r "$OUT/vae_run/base" "$OUT/base.tmp" && rm -r "$OUT/base.tmp/vae" && cp -r "$OUT/h8/vae" "$OUT/base.tmp/vae"
  mv "$OUT/base.tmp" "$OUT/base"
fi
at=0  # the step of the run's latest checkpoint
[ -f "$OUT/run/latest" ] && at=$((10#$(sed 's/checkpoint-//' "$OUT/run/latest")))
if [ "$at" -lt 900 ]; then  # the run was planned to 9500 steps at first; its first 900 kept that schedule
  resume=()
  [ "$at" -gt 0 ] && resume=(--resume)
  "$BIN/dexworld" train "${resume[@]}" --preset tiny-sim --base-path "$OUT/base" --data "$DATA/train" \
    --out "$OUT/run" --steps 900 --cosine-steps 9500 --no-progress
fi
"$BIN/dexworld" train --resume --out "$OUT/run" --data "$DATA/train" --steps 5500 --cosine-steps 5500 \
  --lr-lora-schedule cosine --no-progress
step done
