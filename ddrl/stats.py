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


def relative_change(new: np.ndarray, baseline: np.ndarray) -> tuple[float, float]:
    """(new − baseline) / baseline in %, with a 95 % CI over paired seeds."""
    change = 100.0 * (np.asarray(new) - np.asarray(baseline)) / np.asarray(baseline)
    return mean_ci(change)
