"""The MEC scheduling experiments' tables and plots (`results.md`, `learning_curves.png`,
`delay_cdf.png`) and the headline method's reductions with bootstrap intervals."""
from __future__ import annotations

import math
import pathlib
from typing import Any

import numpy as np
from omegaconf import DictConfig

from ddrl.evaluate import DELAY_BINS_PER_DECADE, DELAY_LOG10_RANGE
from ddrl.stats import mean_ci, relative_difference

PERCENTILES = (50, 95, 99)
VIEW_TITLES = {
    "clean": "every method on the clean environment (headline)",
    "fidelity": "every method on the authors' own simulator (fidelity preset, AMCoEdge's env)",
    "published": "each baseline on its published environment copy (as published)",
}


def comparisons(cfg: DictConfig, results: dict) -> list[dict[str, Any]]:
    """Our method's make-span change vs each compared baseline, per view and per evaluation mode
    of ours (each baseline in its own headline mode). Ours is the headline method, or for a
    baseline named in `compared_by` the method given there (tuned baselines against our tuned
    method: the same tuning effort on both sides)."""
    rows = []
    compared_by = cfg.get("compared_by") or {}
    pairs = list((cfg.get("compare_to") or {}).items())
    for view, view_rows in results.items():
        against = [(view, baseline, paper, view_rows.get(baseline)) for baseline, paper in pairs]
        if view == "fidelity" and "published" in results:  # ours on own env vs baselines as published
            against += [("fidelity vs published copies", baseline, paper, results["published"].get(baseline))
                        for baseline, paper in pairs]  # fmt: skip
        for label, baseline, paper, other in against:
            method = compared_by.get(baseline, cfg.headline)
            ours = view_rows.get(method)
            if other is None or ours is None:
                continue
            for mode, evaluated in _modes(ours).items():
                point, low, high = relative_difference(evaluated["per_seed_make_span"], other["per_seed_make_span"])
                rows.append({"view": label, "method": method, "mode": mode, "baseline": baseline,
                             "baseline_mode": other.get("eval_mode", "–"), "relative_pct": point,
                             "ci95_low": low, "ci95_high": high, "seed_paper_pct": _claim(paper)})  # fmt: skip
    return rows


def _modes(row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A row's evaluation per mode, its headline mode first."""
    modes = row.get("modes") or {row.get("eval_mode", "–"): row}
    first = row.get("eval_mode")
    return dict(sorted(modes.items(), key=lambda item: item[0] != first))


def _claim(paper: Any) -> float:
    return math.nan if paper is None else float(paper)


def fmt_mean_ci(pair, digits: int = 4) -> str:
    mean, ci = pair
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f} ± {ci:.{digits}f}"


def results_table(cfg, results, budget_note: str, num_seeds: int, eval_episodes: int,
                  milp: dict[str, Any] | None = None, skipped: list[dict[str, str]] | None = None) -> str:
    """Markdown tables: one per view, then the headline method's reductions."""
    reference = dict(cfg.get("reference") or {})
    lines = [
        f"# {cfg.experiment_name}: scenario {cfg.env.scenario}",
        "",
        f"Budget: {budget_note}; {num_seeds} seeds; evaluation: {eval_episodes} episodes per seed "
        "(the same episodes for every method and mode of a view). Evaluation modes: `sample` "
        "draws each action from π (the policy a soft actor-critic optimises), `greedy` takes "
        "the deterministic action (argmax Q; for a diffusion actor the argmax of π averaged "
        "over its `greedy_chains` chain runs), `rule` is a scheduler's own decision rule. The "
        "headline column (`make-span`) uses the mode stated a priori per family: sampled for "
        "soft actor-critics, greedy for the DQN family. Make-span (s) "
        "is the mean over tasks (failures count at τ), mean ± 95 % t-interval over seeds. The "
        "training make-span is that of the tasks decided by the exploring policy in the last "
        "chunk of training, the authors' kind of figure (they average their last 50 training episodes). The gap is to "
        f"`{cfg.get('yardstick', 'optimal_myopic')}` of the same view. Decision time: median per task with one slot of "
        "tasks per jitted call on this machine's CPU.",
        "",
    ]
    for view, rows in results.items():
        if not rows:
            continue
        myopic = rows.get(cfg.get("yardstick", "optimal_myopic"))
        tails = bool(cfg.get("delay_percentiles"))
        tail_head = "".join(f" delay p{p} (s) |" for p in PERCENTILES) if tails else ""
        lines += [f"## {view}: {view_title(cfg, view)}", "",
                  f"| method | env, obs | mode | make-span (s) | failure rate | gap to {cfg.get('yardstick', 'optimal_myopic')} |"
                  f" sampled (s) | greedy (s) |{tail_head} training make-span, last chunk (s) | authors' figure |"
                  " train wall (s) | decision (µs/task) |",
                  "|---|---|---|---|---|---|---|---|" + "---|" * (len(PERCENTILES) if tails else 0) + "---|---|---|---|"]  # fmt: skip
        for key, row in sorted(rows.items(), key=lambda item: item[1]["make_span"][0]):
            gap = "–"
            if myopic is not None:
                gap = f"{100 * (row['make_span'][0] / myopic['make_span'][0] - 1):+.1f} %"
            env_name = f"{row['preset']}/{row['env_copy']}, {row['action_space']}, {row.get('observation', '–')}"
            by_mode = {mode: fmt_mean_ci(result["make_span"]) for mode, result in (row.get("modes") or {}).items()}
            shown = view == cfg.get("reference_view", "published") and key in reference
            authors = f"{reference[key]:.4f}" if shown else ""
            wall = f"{row['train_wall_s']:.0f}" if "train_wall_s" in row else "–"
            wall = f"{wall} (resumed)" if row.get("resumed") else wall
            training = fmt_mean_ci(row["train_make_span"]) if "train_make_span" in row else "–"
            tail = "".join(f" {fmt_mean_ci(row[f'delay_p{p}'], 3)} |" for p in PERCENTILES) if tails else ""
            lines.append(
                f"| {row['label']} | {env_name} | {row.get('eval_mode', '–')} | {fmt_mean_ci(row['make_span'])} | "
                f"{row['failure_rate'][0]:.4f} | {gap} | {by_mode.get('sample', '–')} | {by_mode.get('greedy', '–')} |"
                f"{tail} {training} | {authors} | {wall} | "
                f"{_us(row['decision_us'])} |"
            )
        for note in skipped or []:
            if note["view"] == view:
                columns = 12 + (len(PERCENTILES) if tails else 0)
                lines.append(f"| {note['label']} | not run here (see below) |" + " – |" * (columns - 2))
        lines.append("")
    for note in skipped or []:
        lines.append(f"- {note['view']}: `{note['name']}` not run: {note['reason']}")
    if skipped:
        lines.append("")
    if milp:
        lines += [
            "## Per-slot optimum (MILP, HiGHS), clean environment", "",
            f"On {milp['slots']} slots met by the yardstick, the first {milp['tasks_per_slot']} tasks "
            f"of each solved jointly ({milp['solved_optimal']} to proven optimality within "
            f"{cfg.milp.time_limit_s} s): the yardstick's total make-span is "
            f"{milp['myopic_above_milp_pct']:+.2f} % ± {milp['ci95']:.2f} % above the best MILP "
            f"schedule and at most {milp['myopic_above_bound_pct']:+.2f} % ± {milp['bound_ci95']:.2f} % "
            "above the optimum (HiGHS's dual bound); mean ± 95 % CI over slots, raw delays, no "
            "deadline. A method's gap to the optimum is about its gap to the yardstick plus this.", "",
        ]  # fmt: skip
    rows = comparisons(cfg, results)
    if rows:
        lines += ["## Make-span change of ours vs each baseline (95 % bootstrap interval over seeds)", "",
                  "| view | method (mode) | vs (mode) | measured | published claim |", "|---|---|---|---|---|"]  # fmt: skip
        for row in rows:
            lines.append(
                f"| {row['view']} | {row['method']} ({row['mode']}) | {row['baseline']} ({row['baseline_mode']}) | "
                f"{row['relative_pct']:+.2f} % "
                f"[{row['ci95_low']:+.2f}, {row['ci95_high']:+.2f}] | {_claim_text(cfg, row)} |"
            )
        lines.append("")
    return "\n".join(lines)


def view_title(cfg: DictConfig, view: str) -> str:
    if view in VIEW_TITLES:
        return VIEW_TITLES[view]
    return str(cfg.scenario_views[view].get("title") or view)


def _us(value: float) -> str:
    return f"{value:.1f}" if math.isfinite(value) else "–"


def _claim_text(cfg: DictConfig, row: dict[str, Any]) -> str:
    if math.isfinite(row["seed_paper_pct"]):
        return f"{row['seed_paper_pct']:+.2f} %"
    return str(cfg.get("claim") or "–")


def plot_learning_curves(histories: dict, path: pathlib.Path) -> None:
    """Mean make-span of the tasks decided in each chunk of training (exploring policies)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    views = [view for view, rows in histories.items() if rows]
    fig, axes = plt.subplots(1, len(views), figsize=(5.5 * len(views), 4), squeeze=False)
    for ax, view in zip(axes[0], views):
        for key, history in histories[view].items():
            if "step_make_span" not in history:
                continue
            steps = history["env_steps"][:, 0]
            values = history["step_make_span"]
            stats = np.array([mean_ci(row[np.isfinite(row)]) if np.isfinite(row).sum() > 1 else
                              (np.nan, np.nan) for row in values])  # fmt: skip
            ax.plot(steps, stats[:, 0], label=key)
            ax.fill_between(steps, stats[:, 0] - np.nan_to_num(stats[:, 1]),
                            stats[:, 0] + np.nan_to_num(stats[:, 1]), alpha=0.2)  # fmt: skip
        ax.set_title(f"{view}: training (exploring policies)")
        ax.set_xlabel("environment steps per seed")
        ax.set_ylabel("make-span of the tasks decided (s)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_delay_distributions(cfg: DictConfig, results: dict, path: pathlib.Path) -> None:
    """Per view, the tail of the per-task raw delay distribution: P(delay > x), log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    views = [view for view, rows in results.items() if rows]
    fig, axes = plt.subplots(1, len(views), figsize=(5.0 * len(views), 4), squeeze=False)
    edges = 10.0 ** (DELAY_LOG10_RANGE[0] + np.arange(1, len(next(iter(results[views[0]].values()))["delay_histogram"]) + 1)
                     / DELAY_BINS_PER_DECADE)  # fmt: skip
    for ax, view in zip(axes[0], views):
        for key, row in sorted(results[view].items(), key=lambda item: item[1]["make_span"][0]):
            counts = np.asarray(row["delay_histogram"], dtype=np.float64)
            survival = 1.0 - np.cumsum(counts) / max(counts.sum(), 1.0)
            shown = survival > 0
            ax.step(edges[shown], survival[shown], where="post", label=row["label"])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(view_title(cfg, view), fontsize=9)
        ax.set_xlabel("per-task delay x (s, no deadline cap)")
        ax.set_ylabel("P(delay > x)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _x_views(cfg: DictConfig, results: dict) -> list[tuple[float, str]]:
    """(x, view) of the views that carry the experiment's `x_axis` value, by x."""
    views = cfg.get("scenario_views") or {}
    return sorted((float(views[v].x), v) for v in results if v in views and views[v].get("x") is not None)


def _x_methods(results: dict, x_views: list[tuple[float, str]]) -> dict[str, str]:
    """method -> label, in order of first appearance over the x views."""
    methods: dict[str, str] = {}
    for _, view in x_views:
        for key, row in results[view].items():
            methods.setdefault(key, row["label"])
    return methods


def scale_table(cfg: DictConfig, results: dict) -> str:
    """Make-span, failure rate and gap to the yardstick against the views' `x` (`scale.md`)."""
    x_views = _x_views(cfg, results)
    methods = _x_methods(results, x_views)
    yardstick = cfg.get("yardstick", "optimal_myopic")
    label = str(cfg.x_axis.get("label", "x"))
    head = "| method | mode | trained at |" + "".join(f" {x:g} |" for x, _ in x_views)
    rule = "|---|---|---|" + "---|" * len(x_views)

    def cell(view: str, key: str, what: str) -> str:
        row = results[view].get(key)
        if row is None:
            return " – |"
        if what == "make_span":
            return f" {fmt_mean_ci(row['make_span'])} |"
        if what == "failure_rate":
            return f" {row['failure_rate'][0]:.4f} |"
        reference = results[view].get(yardstick)
        if reference is None:
            return " – |"
        return f" {100 * (row['make_span'][0] / reference['make_span'][0] - 1):+.1f} % |"

    lines = [f"# {cfg.experiment_name}: against {label}", "",
             "Each column one view (its own environment, trained and evaluated there unless `trained at` "
             "says where the weights were trained: zero-shot transfer, no retraining). Headline mode per "
             f"row as in results.md; mean ± 95 % CI over seeds; the gap is to `{yardstick}` of the same view.", ""]  # fmt: skip
    for what, title in (("make_span", "make-span (s)"), ("failure_rate", "failure rate"),
                        ("gap", f"gap to {yardstick}")):  # fmt: skip
        lines += [f"## {title} against {label}", "", head, rule]
        for key, name in methods.items():
            some = next(results[v][key] for _, v in x_views if key in results[v])
            trained_at = some.get("trained_in", "each")
            lines.append(f"| {name} | {some.get('eval_mode', '–')} | {trained_at} |"
                         + "".join(cell(view, key, what) for _, view in x_views))  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def plot_against_x(cfg: DictConfig, results: dict, path: pathlib.Path) -> None:
    """Make-span, failure rate and gap to the yardstick against the views' `x` (`scale.png`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x_views = _x_views(cfg, results)
    yardstick = cfg.get("yardstick", "optimal_myopic")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for key, name in _x_methods(results, x_views).items():
        points = [(x, results[v][key], results[v].get(yardstick)) for x, v in x_views if key in results[v]]
        xs = [x for x, _, _ in points]
        style = {"linestyle": "--", "color": "black"} if key == yardstick else {}
        axes[0].errorbar(xs, [r["make_span"][0] for _, r, _ in points], yerr=[r["make_span"][1] for _, r, _ in points],
                         marker="o", capsize=3, label=name, **style)  # fmt: skip
        axes[1].plot(xs, [r["failure_rate"][0] for _, r, _ in points], marker="o", label=name, **style)
        gaps = [(x, 100 * (r["make_span"][0] / ref["make_span"][0] - 1)) for x, r, ref in points if ref is not None]
        axes[2].plot([x for x, _ in gaps], [g for _, g in gaps], marker="o", label=name, **style)
    for ax, ylabel in zip(axes, ("make-span (s)", "failure rate", f"gap to {yardstick} (%)")):
        ax.set_xscale("log")
        ax.set_xlabel(str(cfg.x_axis.get("label", "x")))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
