"""`python -m ddrl.tune`: persistent Optuna studies, batched trials, shared by several processes.

Every trial is CartPole d2sac with 16-wide networks, T = 2 and 600 environment steps, so a
batch compiles in seconds; the trials of a batch share one program.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from hydra import compose, initialize_config_dir

from cli import ROOT
from ddrl import hpsearch, tune
from ddrl.run import CONFIG_DIR

TINY = (
    "+experiment=hpsearch_d2sac", "budget=smoke", "logger=none",
    "methods.d2sac.denoiser_hidden=[16]", "methods.d2sac.critic_hidden=[16]", "methods.d2sac.batch_size=16",
    "tune.params.diffusion_steps=choice(2)", "tune.sampler.kind=random",
)  # fmt: skip
TOLERANCE = {"rtol": 1e-4, "atol": 1e-4}  # float32: batched and unbatched programs may round differently


def tiny_config(storage: Path, *overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="config",
                       overrides=tune.quote_params([*TINY, f"tune.storage={storage}", *overrides]))  # fmt: skip


def load(storage: Path, name: str = "hpsearch_d2sac") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=tune.storage_of(str(storage)))


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A study of 4 trials in batches of 2, interrupted while training its second batch."""
    storage = tmp_path_factory.mktemp("interrupted") / "study.journal"
    calls = []
    real = hpsearch.search_settings

    def interrupt_second(*args, **kwargs):
        calls.append(args[3])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    hpsearch.search_settings = interrupt_second
    try:
        with pytest.raises(KeyboardInterrupt):
            tune.tune(tiny_config(storage, "tune.n_trials=4", "tune.batch=2"))
    finally:
        hpsearch.search_settings = real
    return storage


def test_an_interrupted_study_continues_with_the_next_trials(interrupted):
    before = load(interrupted).trials
    assert [t.state.name for t in before] == ["COMPLETE", "COMPLETE", "FAIL", "FAIL"]  # batch 2: told FAIL
    summary = tune.tune(tiny_config(interrupted, "tune.n_trials=2", "tune.batch=2"))  # the same command again
    assert summary["first_trial"] == 4 and summary["batches"][0]["trials"] == [4, 5]
    after = load(interrupted).trials
    assert [t.number for t in after] == list(range(6))
    assert [t.state.name for t in after[4:]] == ["COMPLETE", "COMPLETE"]
    for old, kept in zip(before[:2], after[:2], strict=True):  # the earlier results are kept
        assert kept.value == old.value and kept.params == old.params
    assert summary["complete"] == 4 and summary["failed"] == 2
    assert summary["best_value"] == max(t.value for t in after if t.value is not None)
    assert all(len(t.user_attrs["per_seed"]) == 2 for t in after if t.state.name == "COMPLETE")
    assert after[4].params != after[0].params  # a fresh sampler seed: not the first run's trials again


def test_batched_trials_equal_the_same_settings_one_at_a_time(interrupted, tmp_path):
    batched = [t for t in load(interrupted).trials[:2]]
    storage = tmp_path / "one_at_a_time.journal"
    study = tune.open_study({"study_name": "hpsearch_d2sac", "storage": str(storage),
                             "direction": "maximize", "load_if_exists": True})  # fmt: skip
    for trial in batched:
        study.enqueue_trial(trial.params)
    summary = tune.tune(tiny_config(storage, "tune.n_trials=2", "tune.batch=1"))
    assert [len(b["trials"]) for b in summary["batches"]] == [1, 1]
    alone = load(storage).trials
    assert [t.params for t in alone] == [t.params for t in batched]
    np.testing.assert_allclose([t.value for t in alone], [t.value for t in batched], **TOLERANCE)
    np.testing.assert_allclose([t.user_attrs["per_seed"] for t in alone],
                               [t.user_attrs["per_seed"] for t in batched], **TOLERANCE)  # fmt: skip
    assert batched[0].value != batched[1].value  # the settings differ


def test_two_launcher_jobs_feed_one_journal_without_losing_trials(tmp_path):
    """`hydra/launcher=local` (submitit, as on Slurm): two worker processes at once, one study."""
    storage = tmp_path / "shared.journal"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    done = subprocess.run(
        [sys.executable, "-m", "ddrl.tune", "-m", "hydra/launcher=local", *TINY, f"tune.storage={storage}",
         "tune.n_trials=2", "tune.batch=1", "tune.worker=0,1", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    trials = load(storage).trials
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert sorted(t.user_attrs["worker"] for t in trials) == [0, 0, 1, 1]
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 4  # the workers sample apart
    jobs = [json.loads((tmp_path / "sweep" / str(job) / "tune.json").read_text()) for job in (0, 1)]
    assert sorted(job["worker"] for job in jobs) == [0, 1]
    assert len(list((tmp_path / "sweep" / ".submitit").glob("*/*_result.pkl"))) == 2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+tune.params.actor_rate=tag(log,interval(1e-5,1e-3))", "tune.params.actor_rate: d2sac has no hyper-parameter 'actor_rate'"),
        ("tune.params.actor_lr=interval(1e-3,1e-5)", "tune.params.actor_lr: empty range: interval(0.001, 1e-05)"),
        ("tune.params.diffusion_steps=range(5,2)", "tune.params.diffusion_steps: empty range: range(5, 2, 1)"),
        ("tune.params.gamma=choice()", "tune.params.gamma: ValueError while evaluating 'choice()': empty choice"),
        ("tune.params.alpha=tag(log,interval(0,1))", "tune.params.alpha: a log interval needs low > 0"),
        ("tune.params.gamma=0.9", "tune.params.gamma: not a search dimension"),
        ("tune.method=dqn", "tune.method: 'dqn' is not one of the methods"),
    ],
)  # fmt: skip
def test_a_bad_search_space_is_a_one_line_error_before_anything_trains(override, message, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["ddrl.tune", "+experiment=hpsearch_d2sac", override, "logger=none"])
    monkeypatch.setattr(tune, "hydra_main", lambda: pytest.fail("reached Hydra"))
    with pytest.raises(SystemExit) as stop:
        tune.main()
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"ddrl.tune: error: {message}") and "\n" not in err, err


def test_the_search_configs_compose_and_check(tmp_path):
    cfg = tiny_config(tmp_path / "x.journal")
    tune.validate(cfg)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        d2sac = compose(config_name="config", overrides=["+experiment=hpsearch_d2sac"])
        amsa = compose(config_name="config", overrides=["+experiment=hpsearch_amsa"])
    assert d2sac.tune.direction == "maximize" and d2sac.tune.objective.metric == "episode_return"
    assert set(d2sac.tune.params) == {"actor_lr", "critic_lr", "alpha", "gamma", "diffusion_steps"}
    assert d2sac.tune.storage == "studies/hpsearch_d2sac.journal" and d2sac.tune.load_if_exists
    assert amsa.tune.direction == "minimize" and amsa.tune.objective.metric == "step_make_span"
    for cfg in (d2sac, amsa):
        tune.validate(cfg)
    problem = tune.build_problem(amsa)  # the MEC trials: DDRL-AMSA per BS, on the clean amcoedge env
    assert problem.algo_cfg["per_bs"] and problem.algo_cfg["action_space"] == "subset"
    assert problem.num_envs == 32 and problem.num_seeds == 3 and problem.train_steps > 0
    space = tune.search_space({"name": "d2sac"}, {"denoiser_hidden": "choice([16],[32,32])"})
    assert tune.decode({"denoiser_hidden": space["denoiser_hidden"].choices[1]},
                       {"denoiser_hidden": [256, 256]}) == {"denoiser_hidden": [32, 32]}  # fmt: skip
    assert tune.quote_params(["tune.params.a=choice(1,2)", "tune.worker=0,1"]) == [
        "tune.params.a='choice(1,2)'", "tune.worker=0,1"]  # fmt: skip


def test_an_sqlite_url_is_used_as_is(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = tune.open_study({"study_name": "s", "storage": url, "direction": "minimize", "load_if_exists": True})
    study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 0.5)
    again = tune.open_study({"study_name": "s", "storage": url, "direction": "minimize", "load_if_exists": True})
    assert [t.value for t in again.trials] == [0.5]
