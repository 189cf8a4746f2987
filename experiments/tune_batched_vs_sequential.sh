#!/usr/bin/env bash
# Issue 15 evidence: a 32-trial TPE search on CartPole d2sac (conf/experiment/hpsearch_d2sac.yaml's
# space), trials trained 8 at a time (one vmapped program per value of T in each batch) vs one at a
# time. Small budget so that both fit in minutes on a 2-core CPU: 2 seeds × 2,000 steps a trial,
# 32-wide networks, batch 64. Each mode gets its own study (journal file) with the same sampler seed.
#   experiments/tune_batched_vs_sequential.sh [OUT_DIR]
set -euo pipefail
out=${1:-experiments/results/tune}
mkdir -p "$out"
common=(+experiment=hpsearch_d2sac logger=none tune.n_trials=32 budget.seeds=2 budget.train_steps=2000
        budget.num_chunks=4 budget.learning_starts=500 'methods.d2sac.denoiser_hidden=[32,32]'
        'methods.d2sac.critic_hidden=[32,32]' methods.d2sac.batch_size=64)
for batch in 8 1; do
  rm -f "$out/batch$batch.journal"
  /usr/bin/time -f "%e s wall" python -m ddrl.tune "${common[@]}" tune.batch=$batch \
    tune.storage="$out/batch$batch.journal" tune.study_name=batch$batch \
    hydra.run.dir="$out/batch$batch" 2>&1 | grep -v "^\[I " | tee "$out/batch$batch.log"
done
