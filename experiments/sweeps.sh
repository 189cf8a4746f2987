#!/usr/bin/env bash
# Scenario sweeps (issue 5): make-span and failure rate of DDRL-AMSA and the AMCoEdge baselines
# (amcoedge, smcoedge, drlcoedge, randcoedge) against five scenario knobs, optimal_myopic the
# dashed reference line. Every point is one Hydra job of `+experiment=sweep` (one summary.json);
# the scenario's own point (amcoedge: p 0.3, N 50, tau 1 s, f up to 50 GHz, B 5) is run once
# with every knob explicit and shared by the five axes; each axis is a multirun over its other
# values; then `ddrl.report --pivot` makes each axis's table and plots.
#
#   experiments/sweeps.sh                      # all five axes, the committed budget
#   experiments/sweeps.sh budget=smoke         # extra overrides go to every job (a quick check)
#
# Env: SWEEP_OUT (tables, plots; default experiments/results/sweeps), SWEEP_RUNS (Hydra job
# directories; default multirun/sweeps), SWEEP_STREAMS (3: the three groups below run as
# parallel processes; 1: one after the other). Compile time dominates at this budget, so XLA's
# CPU backend runs without its expensive optimisation passes (same results to float precision
# here, about half the CPU time), except on the B axis, where the run time of B = 20, 50
# dominates. Beyond B = 5 DDRL-AMSA runs as ddrl_amsa_factored (at B = 10 the subset version's
# 1023-way diffusion head took 10 min for half of its training here).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${SWEEP_OUT:-experiments/results/sweeps}
RUNS=${SWEEP_RUNS:-multirun/sweeps}
STREAMS=${SWEEP_STREAMS:-3}
BUDGET=(budget.seeds=3 budget.episodes=6 budget.eval_episodes=2 trainer.num_envs=16 logger=none)
FAST_COMPILE="--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"

DEFAULT=(env.arrival_prob=0.3 env.num_tasks=50 env.deadline=1.0 env.capacity_max=50 env.num_servers=5)
# axis -> the key it sweeps and its values besides the scenario's own (3 points, 4 for B: what
# the shared 2-core budget allows; see results/sweeps/README.md), in three groups of about equal cost.
SETS=("default deadline capacity_max" "num_tasks arrival_prob" "num_servers")
AXES=(default deadline arrival_prob num_tasks capacity_max num_servers)
declare -A VALUES=(
  [default]="${DEFAULT[*]}"
  [arrival_prob]="env.arrival_prob=0.1,1.0"      # p
  [num_tasks]="env.num_tasks=10,130"             # N tasks per BS per slot
  [deadline]="env.deadline=0.1,0.5"              # tau (s)
  [capacity_max]="env.capacity_max=20,80"        # f = linspace(10, max, 5) GHz
  [num_servers]="env.num_servers=10,20,50 only=[ddrl_amsa_factored,amcoedge,smcoedge,drlcoedge,randcoedge,optimal_myopic]"  # B: the 5 ESs tiled
)

mkdir -p "$OUT" "$RUNS"
run_axis() {
  local axis=$1 start=$SECONDS
  shift
  rm -rf "${RUNS:?}/$axis"
  local flags="${XLA_FLAGS:-} $FAST_COMPILE"
  [[ $axis == num_servers ]] && flags="${XLA_FLAGS:-}"
  # shellcheck disable=SC2086  # VALUES holds several overrides for the default point
  if XLA_FLAGS="$flags" python -m ddrl.run -m +experiment=sweep "${BUDGET[@]}" ${VALUES[$axis]} "$@" \
      "hydra.sweep.dir=$RUNS/$axis" > "$RUNS/$axis.log" 2>&1; then
    echo "$axis: $((SECONDS - start)) s wall, done $(date -u +%H:%M:%S) UTC" | tee -a "$OUT/timings.txt"
  else
    echo "$axis: FAILED after $((SECONDS - start)) s, see $RUNS/$axis.log" | tee -a "$OUT/timings.txt"
  fi
}

echo "start $(date -u '+%Y-%m-%d %H:%M:%S') UTC; $STREAMS streams; ${BUDGET[*]} $*" | tee -a "$OUT/timings.txt"
begin=$SECONDS
[[ $STREAMS == 1 ]] && SETS=("${SETS[*]}")
for group in "${SETS[@]}"; do
  (
    for axis in $group; do
      run_axis "$axis" "$@"
    done
  ) &
done
wait
echo "all points: $((SECONDS - begin)) s wall" | tee -a "$OUT/timings.txt"

for axis in "${AXES[@]:1}"; do  # each axis: its multirun plus the shared point
  key=env.$axis
  logx=""
  [[ $axis == num_servers ]] && logx=--logx
  python -m ddrl.report "$RUNS/default" "$RUNS/$axis" --out "$OUT/$axis" --x "$key" --pivot $logx > /dev/null \
    || echo "$axis: report FAILED" | tee -a "$OUT/timings.txt"
done
