"""Paired comparison of two methods on the same cases: mean difference with a bootstrap 95% CI, the
Wilcoxon signed-rank p-value (scipy), and Holm's adjustment over several comparisons.

Each validation case is one pair (its volume-wise score under method A and under method B); with
nnU-Net's cross-validation every case is validated in exactly one fold, so pooling the folds gives
one pair per case of the dataset.
"""

from __future__ import annotations

import math

import numpy as np

N_BOOTSTRAP = 10000


def paired_comparison(a: dict[str, float], b: dict[str, float], seed: int = 0,
                      n_resamples: int = N_BOOTSTRAP) -> dict:
    """Compare per-case scores {case: value} of A and B on their common cases.

    Returns n_pairs, mean_a, mean_b, mean_diff (A - B), ci_low / ci_high (percentile bootstrap of the
    mean difference over cases, 95%) and p_wilcoxon (two-sided; 1.0 when every difference is 0; NaN
    with fewer than 2 pairs)."""
    from scipy import stats

    cases = sorted(set(a) & set(b))
    x = np.array([a[c] for c in cases], dtype=float)
    y = np.array([b[c] for c in cases], dtype=float)
    d = x - y
    out = {"n_pairs": len(cases), "mean_a": _mean(x), "mean_b": _mean(y), "mean_diff": _mean(d),
           "ci_low": math.nan, "ci_high": math.nan, "p_wilcoxon": math.nan}
    if len(cases) < 2:
        return out
    if np.all(d == 0):
        out.update(ci_low=0.0, ci_high=0.0, p_wilcoxon=1.0)
        return out
    ci = stats.bootstrap((d,), np.mean, n_resamples=n_resamples, confidence_level=0.95, method="percentile",
                         random_state=np.random.default_rng(seed)).confidence_interval
    out.update(ci_low=float(ci.low), ci_high=float(ci.high), p_wilcoxon=float(stats.wilcoxon(x, y).pvalue))
    return out


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given; NaN stays NaN and does not count)."""
    valid = [(p, i) for i, p in enumerate(pvalues) if not math.isnan(p)]
    m = len(valid)
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(valid)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan
