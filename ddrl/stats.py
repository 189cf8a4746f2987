"""Means with confidence intervals over independent seeds."""

from __future__ import annotations

import numpy as np
from scipy import stats


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its two-sided Student-t confidence interval."""
    values = np.asarray(values, dtype=np.float64).ravel()
    mean = float(values.mean())
    if values.size < 2:
        return mean, float("nan")
    half_width = stats.t.ppf(0.5 + confidence / 2, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size)
    return mean, float(half_width)


def relative_difference(
    new: np.ndarray, baseline: np.ndarray, key: int = 0, resamples: int = 10_000
) -> tuple[float, float, float]:
    """100·(mean(new) − mean(baseline))/mean(baseline) with a 95 % bootstrap interval.

    Seeds of different methods are independent, so each side is resampled on its own.
    """
    rng = np.random.default_rng(key)
    new, baseline = np.asarray(new, float), np.asarray(baseline, float)
    point = 100.0 * (new.mean() - baseline.mean()) / baseline.mean()
    new_means = rng.choice(new, (resamples, new.size)).mean(axis=1)
    base_means = rng.choice(baseline, (resamples, baseline.size)).mean(axis=1)
    boot = 100.0 * (new_means - base_means) / base_means
    low, high = np.percentile(boot, [2.5, 97.5])
    return float(point), float(low), float(high)
