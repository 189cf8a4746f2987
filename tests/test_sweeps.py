"""Sweeps and scale-out: Hydra multiruns, submitit launchers, W&B grouping (Optuna studies: test_tune.py).

The runs are the cheapest there are (the myopic scheduler, 5 slots, 2 seeds, 1 episode), in
subprocesses as a user would start them. They sweep the base seed, which leaves the compiled
program unchanged, and share the session's JAX compilation cache (tests/conftest.py), warmed by
one run: only that run compiles.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from cli import ROOT

CHEAP = ("method=optimal_myopic", "env.num_slots=5", "budget=smoke", "budget.seeds=2", "budget.eval_episodes=1")


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory) -> None:
    """The session's compilation cache warmed by one cheap run (compiling is most of a run's cost)."""
    warm = run_module("ddrl.run", *CHEAP, "logger=none", f"hydra.run.dir={tmp_path_factory.mktemp('warm') / 'run'}")
    assert warm.returncode == 0, warm.stderr[-3000:]


def run_module(module: str, *args: str, extra_env: dict[str, str] | None = None,
               timeout: int = 600) -> subprocess.CompletedProcess:
    """`python -m MODULE ARGS` from the repository root, output captured as text."""
    env = {
        **os.environ,  # the session's compilation cache among them
        "WANDB_SILENT": "true",
        "WANDB_MODE": "offline",  # whatever the environment says: no network in tests
        **(extra_env or {}),
    }
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def summaries(sweep_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/summary.json"))]


# ----------------------------------------------------------------------------- multiruns


def test_multirun_writes_one_summary_per_job_and_one_report(tmp_path, warm_cache):
    sweep = tmp_path / "2026-11-27" / "08-00-00"
    result = run_module("ddrl.run", "-m", *CHEAP, "seed=1,2", "logger=wandb",
                        f"hydra.sweep.dir={sweep}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    found = summaries(sweep)
    assert len(found) == 2
    assert all(s["methods"][0]["name"] == "optimal_myopic" for s in found)
    # offline W&B runs land in each job's wandb/ folder, ready for `wandb sync`
    assert len(list(sweep.glob("*/wandb/offline-run-*"))) == 2

    report = run_module("ddrl.report", str(sweep))
    assert report.returncode == 0, report.stderr
    rows = (sweep / "report.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("run,overrides,seed,method")
    assert [row.split(",")[2] for row in rows[1:]] == ["1", "2"]
    table = (sweep / "report.md").read_text()
    assert table.count("| optimal_myopic |") == 2


def test_submitit_local_launcher_runs_each_job(tmp_path, warm_cache):
    sweep = tmp_path / "local"
    result = run_module("ddrl.run", "-m", "hydra/launcher=local", *CHEAP, "logger=none",
                        "seed=1,2", f"hydra.sweep.dir={sweep}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(summaries(sweep)) == 2
    assert len(list((sweep / ".submitit").glob("*/*_result.pkl"))) == 2  # the jobs ran through submitit


def test_broken_wandb_does_not_stop_a_run(tmp_path, warm_cache):
    fake = tmp_path / "fake_site" / "wandb"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("def init(**kwargs):\n    raise ConnectionError('W&B unreachable')\n")
    run_dir = tmp_path / "run"
    result = run_module("ddrl.run", *CHEAP, "logger=wandb", f"hydra.run.dir={run_dir}",
                        extra_env={"PYTHONPATH": str(fake.parent)})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Weights & Biases disabled (ConnectionError: W&B unreachable)" in result.stderr
    assert (run_dir / "summary.json").exists() and (run_dir / "metrics.jsonl").exists()


# ----------------------------------------------------------------------------- configs


def compose(*overrides: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from ddrl.run import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


def test_hpsearch_config_maximises_d2sac_return_over_its_search_space():
    cfg = compose("+experiment=hpsearch_d2sac")
    assert cfg.hydra.sweeper._target_.endswith("BasicSweeper")  # the study is ddrl.tune's, not a sweeper's
    assert cfg.tune.method == "d2sac" and cfg.tune.direction == "maximize"
    assert set(cfg.tune.params) == {"actor_lr", "critic_lr", "alpha", "gamma", "diffusion_steps"}
    assert list(cfg.only) == ["d2sac"] and cfg.experiment_runner == "cartpole"
    assert cfg.budget.name == "hpsearch"
    assert compose("+experiment=hpsearch_d2sac", "budget=smoke").budget.name == "smoke"


def test_objective_is_the_headline_methods_metric():
    from ddrl.run import objective

    summary = {"methods": [{"name": "a", "mean": 1.0}, {"name": "b", "mean": 2.0}, {"name": "c", "mean": 3.0}]}
    assert objective(OmegaConf.create({}), summary) == 1.0
    assert objective(OmegaConf.create({"only": ["c", "a"]}), summary) == 3.0
    assert objective(OmegaConf.create({"headline": "b", "only": ["c"]}), summary) == 2.0
    assert objective(OmegaConf.create({"headline": "x", "only": None}), summary) == 1.0


def test_precheck_accepts_launcher_and_search_space_overrides():
    from ddrl import tune
    from ddrl.run import precheck

    precheck(["-m", "hydra/launcher=slurm", "hydra.launcher.partition=gpu", "+experiment=cartpole", "seed=0,1"])
    tune.precheck(tune.quote_params([
        "-m", "hydra/launcher=slurm", "hydra.launcher.partition=gpu", "+experiment=hpsearch_d2sac",
        "tune.n_trials=2", "tune.worker=0,1,2,3", "tune.params.actor_lr=tag(log,interval(1e-5,1e-3))",
        "tune.params.gamma=choice(0.9,0.99)", "tune.params.diffusion_steps=int(interval(2,10))",
    ]))  # fmt: skip
    with pytest.raises(SystemExit) as stop:
        precheck(["-m", "hydra/launcher=local", "budget.seeds=interval(0,3)"])
    assert stop.value.code == 2


def test_slurm_launcher_config_makes_an_sbatch_script(tmp_path, monkeypatch):
    import submitit
    from hydra.utils import instantiate
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    cfg = compose("hydra/launcher=slurm", "hydra.launcher.partition=gpu", f"hydra.sweep.dir={tmp_path}")
    launcher = instantiate(cfg.hydra.launcher)
    assert type(launcher).__name__ == "SlurmLauncher"
    # the parameters as SlurmLauncher.launch hands them to submitit (no cluster here: no srun)
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", staticmethod(lambda: 1))
    params = dict(launcher.params)
    executor = submitit.AutoExecutor(folder=params.pop("submitit_folder"), cluster="slurm",
                                     slurm_max_num_timeout=params.pop("max_num_timeout"))  # fmt: skip
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    script = submitit.slurm.slurm._make_sbatch_string(  # an array of 20 jobs, 16 at a time
        command="python -c pass", folder=executor._executor.folder, map_count=20, **executor._executor.parameters
    )
    for line in ("--partition=gpu", "--time=240", "--gpus-per-node=1", "--cpus-per-task=8", "--mem=32GB",
                 "--array=0-19%16"):  # fmt: skip
        assert f"#SBATCH {line}\n" in script, script
    assert f"source {ROOT}/.venv/bin/activate" in script  # ${hydra.runtime.cwd} resolved


# ----------------------------------------------------------------------------- W&B


def _config(**over) -> dict:
    config = {
        "env": {"name": "mec_amcoedge", "scenario": "amcoedge", "preset": "clean"},
        "algo": {"name": "optimal_myopic"},
        "budget": {"name": "smoke"},
    }
    config.update(over)
    return config


def test_wandb_kwargs_single_run():
    from ddrl.log import wandb_init_kwargs

    kwargs = wandb_init_kwargs({"mode": "offline", "tags": ["mine"]}, _config(), "optimal_myopic-mec_amcoedge",
                               "optimal_myopic", 1, Path("/runs/x"))  # fmt: skip
    assert kwargs["group"] == "optimal_myopic-mec_amcoedge"
    assert kwargs["job_type"] == "optimal_myopic" and kwargs["name"] == "optimal_myopic-seed1"
    assert kwargs["tags"] == ["mine", "scenario:amcoedge", "preset:clean", "budget:smoke"]
    assert kwargs["mode"] == "offline" and kwargs["dir"] == "/runs/x" and kwargs["config"]["seed_index"] == 1


def test_wandb_kwargs_in_a_sweep_group_by_experiment_and_sweep():
    from ddrl.log import wandb_init_kwargs

    config = _config(methods={"ddrl_amsa": {"name": "d2sac"}, "amcoedge": {"name": "dqn"}}, experiment_name="amsa")
    sweep = {"id": "2026-11-27_08-00-00", "dir": "multirun/2026-11-27/08-00-00", "job": 3,
             "overrides": ["+experiment=amsa", "seed=3"]}  # fmt: skip
    kwargs = wandb_init_kwargs({}, config, "amsa", "fidelity-ddrl_amsa", 0, Path("r"), sweep)
    assert kwargs["group"] == "amsa@2026-11-27_08-00-00"
    assert kwargs["job_type"] == "d2sac" and kwargs["name"] == "fidelity-ddrl_amsa-job3-seed0"
    assert kwargs["tags"] == ["scenario:amcoedge", "view:fidelity", "preset:fidelity", "budget:smoke",
                              "sweep:2026-11-27_08-00-00", "+experiment=amsa", "seed=3"]  # fmt: skip
    assert kwargs["config"]["sweep"]["job"] == 3 and kwargs["mode"] == "offline"
    cartpole = {"env": {"name": "cartpole"}, "budget": {"name": "default"}, "methods": {"dqn": {"name": "dqn"}}}
    kwargs = wandb_init_kwargs({"group": "mine"}, cartpole, "cartpole", "dqn", 0, Path("r"), sweep)
    assert kwargs["group"] == "mine" and kwargs["job_type"] == "dqn"
    assert kwargs["tags"][:2] == ["scenario:cartpole", "budget:default"]


def test_wandb_failure_leaves_the_jsonl_logger_working(tmp_path, monkeypatch, capsys):
    wandb = pytest.importorskip("wandb")
    from ddrl.log import make_logger

    calls = []

    def broken_init(**kwargs):
        calls.append(kwargs)
        raise RuntimeError("no network")

    monkeypatch.setattr(wandb, "init", broken_init)
    logger = make_logger({"kind": "wandb", "mode": "online"}, tmp_path, _config(), "g", "optimal_myopic", 2)
    logger.log(1, {"make_span": [0.2, 0.3]})
    logger.summary({"make_span": 0.25})
    logger.close()
    assert len(calls) == 1 and logger.wandb_runs == []
    assert "Weights & Biases disabled (RuntimeError: no network)" in capsys.readouterr().err
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == [{"step": 1, "make_span": [0.2, 0.3]}, {"summary": {"make_span": 0.25}}]


def test_wandb_absent_or_disabled_starts_nothing(tmp_path, monkeypatch):
    from ddrl.log import make_logger

    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    logger = make_logger({"kind": "wandb", "mode": "offline"}, tmp_path / "a", _config(), "g", "n", 1)
    logger.close()
    assert logger.wandb_runs == []
    logger = make_logger({"kind": "wandb", "mode": "disabled"}, tmp_path / "b", _config(), "g", "n", 1)
    logger.close()
    assert logger.wandb_runs == [] and not (tmp_path / "b" / "wandb").exists()
