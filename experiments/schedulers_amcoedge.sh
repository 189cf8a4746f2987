#!/usr/bin/env bash
# The non-learning schedulers on the AMCoEdge scenario, 10 seeds x 50 episodes each:
# both presets, the published baseline environment copies, and two ablations.
set -euo pipefail
out=${1:-multirun/schedulers_amcoedge}
python -m ddrl.run -m method=optimal_myopic,randcoedge env.preset=fidelity,clean logger=none hydra.sweep.dir=$out/main
python -m ddrl.run -m method=randcoedge env.preset=fidelity env.env_copy=randcoedge,smcoedge,drlcoedge logger=none hydra.sweep.dir=$out/copies
python -m ddrl.run -m method=randcoedge env.preset=fidelity env.quirks.make_span_over_selected=false logger=none hydra.sweep.dir=$out/ablation
python -m ddrl.run -m method=optimal_myopic method.action_space=pair,single env.preset=clean logger=none hydra.sweep.dir=$out/myopic_spaces
