"""CartPole-v1: diffusion SAC (published and project variants) vs DQN, SAC and PPO.

Every method trains `budget.seeds` vmapped seeds for the same number of environment steps.
Writes `results.md` (average reward over training, greedy return at fixed budgets, the
relative difference of DSAC vs DQN / SAC beside the seed paper's +9.57 % / +18.36 %),
`learning_curves.png`, per-method metric histories (`<method>_history.npz`) and JSONL / W&B
logs, and returns the summary that `ddrl.run` writes to summary.json.

    python -m ddrl.run +experiment=cartpole [budget=smoke] [budget.train_steps=500000]
"""
import pathlib
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from ddrl import agents
from ddrl.progress import ExperimentProgress
from ddrl.provenance import atomic_write_text
from ddrl.stats import mean_ci, relative_difference

SEED_PAPER = {"dqn": 9.57, "sac": 18.36}  # DSAC's average-reward gain (%) in the seed paper
LABELS = {
    "d2sac": "DSAC (diffusion SAC, ours)",
    "d2sac_published": "DSAC (diffusion SAC, published)",
    "dqn": "DQN (CleanRL)",
    "sac": "SAC (discrete)",
    "ppo": "PPO (PureJaxRL)",
}
BUDGET_FRACTIONS = (0.25, 0.5, 1.0)


def validate(cfg: DictConfig) -> None:
    """Every method names a registered agent whose hyper-parameters make a Config.

    Types and ranges of every field were checked before (ddrl.validation).
    """
    from ddrl.envs.scenarios import ConfigError
    from ddrl.training import METHOD_KEYS

    for key, method in cfg.methods.items():
        if method.name not in agents.REGISTRY:
            raise ConfigError(f"methods.{key}.name", f"unknown agent {method.name!r}")
        hyper = {k: v for k, v in OmegaConf.to_container(method).items() if k not in METHOD_KEYS}
        try:
            agents.make_config(method.name, hyper)
        except (ValueError, TypeError) as error:
            raise ConfigError(f"methods.{key}", str(error)) from None
    for key in cfg.get("only") or []:
        if key not in cfg.methods:
            raise ConfigError("only", f"{key!r} is not one of the methods {list(cfg.methods)}")


def run(cfg: DictConfig, run_dir: pathlib.Path) -> dict[str, Any]:
    """Train every method, write the table and plot, return the summary."""
    import gymnax

    from ddrl.experiments.methods import train_and_evaluate

    run_dir = pathlib.Path(run_dir)
    env, env_params = gymnax.make(cfg.env.id)
    train_steps = int(cfg.budget.train_steps or cfg.default_train_steps)
    num_seeds = int(cfg.budget.seeds)
    histories: dict[str, dict[str, np.ndarray]] = {}
    timings: dict[str, dict[str, float]] = {}
    keys = cfg.get("only") or list(cfg.methods)
    progress = ExperimentProgress([(None, key, train_steps * num_seeds) for key in keys])
    for key in keys:
        progress.start(None, key)
        method = cfg.methods[key]
        warmup_cap = cfg.budget.get("learning_starts")
        if warmup_cap is not None and "learning_starts" in method:
            method = OmegaConf.merge(method, {"learning_starts": min(method.learning_starts, warmup_cap)})
        trained, _ = train_and_evaluate(
            cfg, method, env, env_params, train_steps, run_dir, key,
            lambda trained: _method_summary(key, trained.history, num_seeds),
            num_envs=cfg.trainer.num_envs, eval_episodes=int(cfg.budget.eval_episodes),
        )  # fmt: skip
        history = trained.history
        timings[key] = {"wall_s": trained.train_wall_s, "env_steps_per_s": trained.env_steps_per_s}
        histories[key] = history
        result = _method_summary(key, history, num_seeds)
        progress.finish(f"average reward {result['average_reward']:.1f} ± {result['average_reward_ci95']:.1f}, "
                        f"greedy return {result['final_greedy_return']:.1f} ± {result['final_greedy_return_ci95']:.1f}")  # fmt: skip
    table = results_table(histories, cfg.methods, train_steps, num_seeds, int(cfg.budget.eval_episodes))
    atomic_write_text(run_dir / "results.md", table)
    plot_learning_curves(histories, run_dir / "learning_curves.png")
    print(table)
    return {
        "methods": [
            {
                "name": key,
                "metric": "average_training_return",
                **dict(zip(("mean", "ci95"), mean_ci(_average_reward(h)))),
                "final_greedy_return": dict(zip(("mean", "ci95"), mean_ci(h["eval_return"][-1]))),
                "seeds": num_seeds,
                "env_steps": int(h["env_steps"][-1, 0]),
                **timings[key],
            }
            for key, h in histories.items()
        ],
        "comparisons": comparisons(histories),
        "train_steps": train_steps,
    }


def _average_reward(history: dict[str, np.ndarray]) -> np.ndarray:
    """Per seed: mean completed-episode return over the chunks of training ("average reward")."""
    return np.nanmean(history["episode_return"], axis=0)


def _method_summary(key: str, history: dict[str, np.ndarray], num_seeds: int) -> dict[str, float]:
    avg, avg_ci = mean_ci(_average_reward(history))
    final, final_ci = mean_ci(history["eval_return"][-1])
    return {"average_reward": avg, "average_reward_ci95": avg_ci,
            "final_greedy_return": final, "final_greedy_return_ci95": final_ci}  # fmt: skip


def comparisons(histories: dict[str, dict[str, np.ndarray]]) -> list[dict[str, Any]]:
    """DSAC variants vs DQN and SAC on average reward, beside the seed paper's claims."""
    rows = []
    for dsac in ("d2sac", "d2sac_published"):
        for baseline, paper in SEED_PAPER.items():
            if dsac in histories and baseline in histories:
                point, low, high = relative_difference(
                    _average_reward(histories[dsac]), _average_reward(histories[baseline])
                )
                rows.append({"method": dsac, "baseline": baseline, "relative_pct": point,
                             "ci95_low": low, "ci95_high": high, "seed_paper_pct": paper})  # fmt: skip
    return rows


def _fmt(values: np.ndarray) -> str:
    """Mean ± 95 % t-interval of the finite values (a chunk may complete no episode)."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return "–"
    mean, ci = mean_ci(values)
    return f"{mean:.1f} ± {ci:.1f}" if values.size > 1 else f"{mean:.1f}"


def results_table(
    histories: dict[str, dict[str, np.ndarray]],
    methods: Any,
    train_steps: int,
    num_seeds: int,
    eval_episodes: int,
) -> str:
    """Markdown tables of the run (mean ± 95 % t-interval over seeds)."""
    budget_cols = []
    for fraction in BUDGET_FRACTIONS:
        budget_cols.append(f"greedy return @ {int(fraction * train_steps):,} steps")
    lines = [
        f"# CartPole-v1 (gymnax): {train_steps:,} env steps per seed, {num_seeds} seeds",
        "",
        "Average reward = mean return of the episodes completed during training (exploring "
        "policy), averaged over the run. Greedy return = mean of "
        f"{eval_episodes} greedy episodes at the end of the chunk closest to the budget. "
        "Values are mean ± 95 % t-interval over seeds.",
        "",
        "| method | env steps | average reward | last-chunk training return | "
        + " | ".join(budget_cols) + " |",
        "|---" * (4 + len(budget_cols)) + "|",
    ]
    for key, history in histories.items():
        steps = history["env_steps"][:, 0]
        cells = []
        for fraction in BUDGET_FRACTIONS:
            index = int(np.argmin(np.abs(steps - fraction * steps[-1])))
            cells.append(_fmt(history["eval_return"][index]))
        lines.append(
            f"| {LABELS.get(methods[key].name, key)} | {int(steps[-1]):,} | "
            f"{_fmt(_average_reward(history))} | {_fmt(history['episode_return'][-1])} | "
            + " | ".join(cells) + " |"
        )
    rows = comparisons(histories)
    if rows:
        lines += [
            "",
            "Relative difference in average reward (95 % bootstrap interval over seeds), beside "
            "the seed paper's claim (budget and seeds not stated there):",
            "",
            "| DSAC variant | vs | measured | seed paper |",
            "|---|---|---|---|",
        ]
        for row in rows:
            lines.append(
                f"| {LABELS[row['method']]} | {LABELS[row['baseline']]} | "
                f"{row['relative_pct']:+.2f} % [{row['ci95_low']:+.2f}, {row['ci95_high']:+.2f}] | "
                f"+{row['seed_paper_pct']:.2f} % |"
            )
    return "\n".join(lines) + "\n"


def plot_learning_curves(histories: dict[str, dict[str, np.ndarray]], path: pathlib.Path) -> None:
    """Training return and greedy return vs env steps, mean ± 95 % t-band over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for key, history in histories.items():
        steps = history["env_steps"][:, 0]
        for ax, metric in zip(axes, ("episode_return", "eval_return")):
            stats = np.array([mean_ci(row[np.isfinite(row)]) if np.isfinite(row).any() else
                              (np.nan, np.nan) for row in history[metric]])  # fmt: skip
            mean, ci = stats[:, 0], np.nan_to_num(stats[:, 1])
            ax.plot(steps, mean, label=LABELS.get(key, key))
            ax.fill_between(steps, mean - ci, mean + ci, alpha=0.2)
    axes[0].set_title("training episodes (exploring)")
    axes[1].set_title("greedy evaluation")
    for ax in axes:
        ax.set_xlabel("environment steps per seed")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("episode return")
    axes[1].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
