#!/usr/bin/env bash
# The shipped model carried onto the 4x VAE with a 1x2x2 patch (twelfth attempt, docs/results.md), resumable:
#   1-3. data, then the VAE: VAE (default worldmodel/checkpoints/tiny-sim/vae: the encoder of
#        worldmodel/checkpoints/tiny-sim-vae-4x, the shipped result of steps 2-3, under the wider decoder of the
#        sixteenth attempt; VAE=worldmodel/checkpoints/tiny-sim-vae-4x gives the same latents, the narrow decoder);
#        VAE=train trains the 4x VAE and its hand-loss fine-tune here (scripts/tiny_sim_4x.sh with VAE_ONLY=1, ~70 min)
#   4.   stage 2 from the shipped tiny-sim (transformer, LoRA, control module) on that VAE's latents: `dexworld train
#        --init ... --init-vae`. Same 192-wide transformer and 1x2x2 patch, so each token outputs 64 latent values as
#        in the 8x model, but on a 16x16 token grid (4x the tokens). Both LRs on a cosine to STEPS, on both training
#        sets (train_mix).
# Run it again after an interruption: stage 2 resumes from its latest checkpoint.
# INIT defaults to the shipped tiny-sim. Until 2026-12-06 that was the 8x model (W2) this recipe carried over; it is
# now the 4x result itself, so by default the script trains it further. To redo the carry from W2:
#   git worktree add /tmp/w2 0f4bb03 && INIT=/tmp/w2/worldmodel/checkpoints/tiny-sim bash scripts/tiny_sim_4x_fine.sh
#
#   OMP_NUM_THREADS=2 MUJOCO_GL=egl bash scripts/tiny_sim_4x_fine.sh [OUT]      # STEPS (default 2000), INIT, VAE
# About 10 min of data (if not rendered yet), 70 min for VAE=train, ~3.5 s per stage-2 step on 2 cores (measured,
# docs/results.md).
set -euo pipefail
OUT=$(realpath -m -- "${1:-$(dirname "$0")/../outputs/tiny_sim12}")
BIN=$(realpath -m -- "${BIN:-$(dirname "$0")/../.venv/bin}")
INIT=$(realpath -m -- "${INIT:-$(dirname "$0")/../worldmodel/checkpoints/tiny-sim}")
VAE=${VAE:-$(dirname "$0")/../worldmodel/checkpoints/tiny-sim/vae}
if [ "$VAE" != train ]; then  # checked before the data step spends minutes
  VAE=$(realpath -m -- "$VAE")
  [ -f "$VAE/config.json" ] || { echo "tiny_sim_4x_fine.sh: VAE $VAE is not a saved AutoencoderKLWan folder" >&2; exit 2; }
fi
STEPS=${STEPS:-2000}
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 MUJOCO_GL=${MUJOCO_GL:-egl}
if [ "$VAE" = train ]; then
  VAE_ONLY=1 BIN="$BIN" bash scripts/tiny_sim_4x.sh "$OUT"
  VAE=$OUT/h8/vae
else
  DATA_ONLY=1 BIN="$BIN" bash scripts/tiny_sim_4x.sh "$OUT"
fi

echo "$(date -u +%FT%TZ) == stage 2 from $INIT on the VAE $VAE"
if [ -f "$OUT/run/latest" ]; then
  "$BIN/dexworld" train --resume --out "$OUT/run" --steps "$STEPS" --cosine-steps "$STEPS" --no-progress
else
  "$BIN/dexworld" train --preset tiny-sim --init "$INIT" --init-vae "$VAE" --data outputs/tiny_sim/data/train_mix \
    --out "$OUT/run" --steps "$STEPS" --lr-lora-schedule cosine --checkpoint-every 50 --no-progress
fi
echo "$(date -u +%FT%TZ) == done"
