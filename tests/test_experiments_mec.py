"""The amsa experiment composes and runs its smoke budget end to end; config errors stop early."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from omegaconf import OmegaConf

from cli import ROOT, precheck_lines, run_cli
from ddrl.experiments.tables import comparisons


def test_amsa_smoke_trains_per_bs_agents_and_writes_the_table(tmp_path):
    run_dir = tmp_path / "amsa"
    result = run_cli("+experiment=amsa", "budget=smoke", "logger=none", "views=[clean]",
                     "only=[smcoedge,ddrl_amsa,optimal_myopic]", "env.num_slots=10", run_dir=run_dir)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = {(m["view"], m["name"]): m for m in summary["methods"]}
    assert set(rows) == {("clean", "smcoedge"), ("clean", "ddrl_amsa"), ("clean", "optimal_myopic")}
    assert rows["clean", "ddrl_amsa"]["action_space"] == "subset"
    assert rows["clean", "smcoedge"]["action_space"] == "topk"
    for row in rows.values():
        assert row["seeds"] == 2 and 0 < row["mean"] < 1.0 and row["decision_us"] > 0
    assert [(c["view"], c["baseline"], c["mode"], c["baseline_mode"]) for c in summary["comparisons"]] == [
        ("clean", "smcoedge", "sample", "greedy"), ("clean", "smcoedge", "greedy", "greedy")]  # both of ours
    amsa = rows["clean", "ddrl_amsa"]
    assert amsa["eval_mode"] == "sample" and set(amsa["modes"]) == {"sample", "greedy"}  # the trained policy heads
    assert amsa["mean"] == amsa["modes"]["sample"]["make_span"][0]
    assert rows["clean", "smcoedge"]["eval_mode"] == "greedy" and set(rows["clean", "smcoedge"]["modes"]) == {"greedy"}
    assert rows["clean", "optimal_myopic"]["eval_mode"] == "rule"
    table = (run_dir / "results.md").read_text()
    assert "-13.54 %" in table and "MILP" in table  # the seed's claim; the per-slot optimum
    assert (run_dir / "learning_curves.png").stat().st_size > 10_000
    # scripts/reevaluate.py restores the run's checkpoints and reproduces its own evaluation
    again = subprocess.run([sys.executable, "scripts/reevaluate.py", str(run_dir), "--view", "clean", "--method",
                            "ddrl_amsa", "--mode", "sample"], cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout.splitlines()[-1])["make_span"] == amsa["modes"]["sample"]["make_span"]
    # scripts/chain_saturation.py reads the same checkpoints: shares and counts within their ranges
    saturation = subprocess.run([sys.executable, "scripts/chain_saturation.py", str(run_dir), "--view", "clean",
                                 "--method", "ddrl_amsa", "--states", "64"], cwd=ROOT, capture_output=True, text=True,
                                timeout=300)  # fmt: skip
    assert saturation.returncode == 0, saturation.stderr[-3000:]
    figures = json.loads(saturation.stdout.splitlines()[-1])
    assert 0.0 <= figures["share_at_bound"] <= 1.0 and 1.0 <= figures["actions_tied_at_top"] <= 31
    assert 0.0 < figures["entropy"] <= np.log(31) + 1e-3 and figures["groups"] == 5
    # scripts/myopic_regret.py: the sets DDRL-AMSA's own critic picks against the best of all 31 on the true state
    regret = subprocess.run([sys.executable, "scripts/myopic_regret.py", str(run_dir), "--view", "clean", "--method",
                             "ddrl_amsa", "--mode", "critic", "--decisions", "100"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert regret.returncode == 0, regret.stderr[-3000:]
    figures = json.loads(regret.stdout.splitlines()[-1])
    assert figures["sets"] == 31 and 0 < figures["decisions"] <= 200 and 0.0 <= figures["agreement"] <= 1.0
    assert figures["regret_ms"] >= 0.0 and 1.0 <= figures["rank"] <= 31 and figures["uniform_regret_ms"] > 0.0
    # scripts/critic_ranking.py: the critic's per-BS mean Q against the true mean make-span of every set
    ranking = subprocess.run([sys.executable, "scripts/critic_ranking.py", str(run_dir), "--view", "clean", "--method",
                              "ddrl_amsa", "--critic", "target", "--decisions", "200", "--episodes", "2"], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)  # fmt: skip
    assert ranking.returncode == 0, ranking.stderr[-3000:]
    figures = json.loads(ranking.stdout.splitlines()[-1])
    assert figures["critic"] == "target" and figures["seeds"] == 2 and 0 < figures["real_decisions"] <= 400
    assert all(regret >= 0.0 for regret in figures["per_bs"]["critic_set_regret_ms"])  # the best set is the best
    assert all(len(sets) == 2 and all(0 <= s < 31 for per_bs in sets for s in per_bs) for sets in figures["tables"].values())
    assert {"agents", "critic_greedy", "best_mean_table", "often_critic_table"} <= set(figures["policies"])
    # scripts/policy_search.py: each seed's learner played as a table of its own set frequencies, then searched on
    search = subprocess.run([sys.executable, "scripts/policy_search.py", "--from-run", str(run_dir), "--view", "clean",
                             "--method", "ddrl_amsa", "--decisions", "300", "--generations", "2", "--report-every", "1",
                             "--population", "2", "--episodes", "1"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert search.returncode == 0, search.stderr[-3000:]
    figures = json.loads(search.stdout.splitlines()[-1])
    learner = figures["started_from"]
    assert figures["search_seeds"] == 2 and learner["method"] == "ddrl_amsa" and 0 < learner["decisions"] <= 600
    assert 0 < learner["as_table"]["make_span"][0] < 1.0 and 0 < figures["make_span"][0] < 1.0
    assert all(0.0 <= h <= np.log(31) + 1e-3 for h in learner["per_bs"]["entropy_nats"])
    assert figures["search_episodes_per_seed"] == 2 * 2 * 2 * 1 and figures["optimal_myopic"]["make_span"][0] > 0
    assert len(figures["utilisation"]) == 5 and all(0.0 <= u <= 1.0 for u in figures["utilisation"])


def test_amsa_published_view_runs_each_baseline_on_its_env_copy(tmp_path):
    run_dir = tmp_path / "published"
    result = run_cli("+experiment=amsa", "budget=smoke", "logger=none", "views=[published]", "milp=null",
                     "only=[randcoedge,optimal_myopic]", "env.num_slots=10", "+decision_time=false", run_dir=run_dir)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((run_dir / "summary.json").read_text())["methods"]
    assert [(m["view"], m["name"], m["env_copy"]) for m in rows] == [("published", "randcoedge", "randcoedge")]
    assert "0.2916" in (run_dir / "results.md").read_text()  # the authors' figure beside ours


def test_experiment_config_errors_stop_before_training():
    # ddrl.run's check in process (the CLI's exit 2 and one line are tested in test_run.py)
    code, lines = precheck_lines(["+experiment=amsa", "views=[clean,dirty]"])
    assert code == 2 and len(lines) == 1 and "views" in lines[0] and "dirty" in lines[0]
    code, lines = precheck_lines(["+experiment=ats", "only=[lad]"])
    assert code == 2 and len(lines) == 1 and "only" in lines[0]


def test_a_tuned_baseline_is_compared_with_our_tuned_method_and_the_rest_with_the_headline():
    def row(per_seed, mode="greedy"):
        return {"eval_mode": mode, "per_seed_make_span": per_seed, "modes": {mode: {"per_seed_make_span": per_seed}}}

    cfg = OmegaConf.create({"headline": "ours", "compare_to": {"base": -10.0, "base_tuned": -10.0},
                            "compared_by": {"base_tuned": "ours_tuned"}})  # fmt: skip
    results = {"clean": {"ours": row([0.9, 0.9], "sample"), "ours_tuned": row([0.8, 0.8], "sample"),
                         "base": row([1.0, 1.0]), "base_tuned": row([1.0, 1.0])}}  # fmt: skip
    pairs = {(r["method"], r["baseline"]): r["relative_pct"] for r in comparisons(cfg, results)}
    assert pairs.keys() == {("ours", "base"), ("ours_tuned", "base_tuned")}
    assert np.isclose(pairs[("ours", "base")], -10.0) and np.isclose(pairs[("ours_tuned", "base_tuned")], -20.0)
    del results["clean"]["ours_tuned"]  # not run (e.g. `only=`): its comparisons are left out, not made with another
    assert [(r["method"], r["baseline"]) for r in comparisons(cfg, results)] == [("ours", "base")]
