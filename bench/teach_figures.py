"""The figures that decide a teaching preset's claim, computed from a run's own files (metrics.jsonl, samples.jsonl,
scores.json): a least-squares slope with its standard error, mean-and-spread bands, and the verdict per claim.
Pure Python: no model, no torch."""
from __future__ import annotations

import math
from statistics import fmean

# Two-sided 95% Student t quantiles by degrees of freedom (a normal 1.96 beyond 30).
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
       11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086,
       25: 2.060, 30: 2.042}
SHARE_DOMINATES = 0.5  # the value loss "dominates" when it is more than half of the shared loss's magnitude


def t95(df: int) -> float:
    """The 95% two-sided t quantile for `df` degrees of freedom (the nearest tabled df at or below it)."""
    if df < 1:
        return math.inf
    if df > 30:
        return 1.96
    return T95[max(k for k in T95 if k <= df)]


def slope_with_error(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """(slope, its standard error) of the least-squares line through (xs, ys); the error is inf below 3 points
    (no residual degree of freedom left)."""
    n = len(xs)
    if n != len(ys) or n < 2:
        raise ValueError(f"a slope needs at least 2 points with one y each, got {n} x and {len(ys)} y")
    mx, my = fmean(xs), fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("every x is the same: a slope needs at least two different steps")
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    if n < 3:
        return slope, math.inf
    residuals = sum((y - my - slope * (x - mx)) ** 2 for x, y in zip(xs, ys))
    return slope, math.sqrt(residuals / (n - 2) / sxx)


def slope_band(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """(slope, low, high): the slope and its 95% confidence band (t with n - 2 degrees of freedom)."""
    slope, error = slope_with_error(xs, ys)
    half = t95(len(xs) - 2) * error
    return slope, slope - half, slope + half


def mean_band(values: list[float]) -> tuple[float, float, float]:
    """(mean, low, high): the mean and its 95% band (t with n - 1 degrees of freedom); one value: an infinite band."""
    if not values:
        raise ValueError("a mean needs at least one value")
    mean = fmean(values)
    if len(values) < 2:
        return mean, -math.inf, math.inf
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    half = t95(len(values) - 1) * sd / math.sqrt(len(values))
    return mean, mean - half, mean + half


def verdict(direction: str, low: float, high: float) -> str:
    """holds / does not hold: 'rises' needs the whole band above 0, 'falls' below 0, 'flat' a band holding 0."""
    checks = {"rises": low > 0, "falls": high < 0, "flat": low <= 0 <= high}
    if direction not in checks:
        raise ValueError(f"unknown direction {direction!r}: choose one of {', '.join(checks)}")
    return "holds" if checks[direction] else "does not hold"


def value_loss_share(metrics: list[dict], vf_coef: float) -> float | None:
    """Mean over steps of vf_coef * value_loss / (|policy_loss| + vf_coef * value_loss): the value loss's share of
    the shared PPO loss's magnitude (None when no step logged both losses)."""
    shares = []
    for m in metrics:
        if "value_loss" in m and "policy_loss" in m:
            value = vf_coef * m["value_loss"]
            total = abs(m["policy_loss"]) + value
            shares.append(value / total if total > 0 else 0.0)
    return fmean(shares) if shares else None


def rl_figures(metrics: list[dict], vf_coef: float) -> dict:
    """The RL decisive figures from metrics.jsonl's lines (one per step): the reward's slope per step with its band,
    first/last reward, final KL, mean response length at the first and last step, the value-loss share."""
    lines = [m for m in metrics if "reward" in m]
    if len(lines) < 2:
        raise ValueError(f"the run logged {len(lines)} step(s) with a reward: a slope needs at least 2")
    slope, low, high = slope_band([float(m["step"]) for m in lines], [m["reward"] for m in lines])
    return {"steps": len(lines), "slope": slope, "slope_low": low, "slope_high": high,
            "reward_first": lines[0]["reward"], "reward_last": lines[-1]["reward"], "kl_final": lines[-1].get("kl"),
            "length_first": lines[0].get("response_length"), "length_last": lines[-1].get("response_length"),
            "value_share": value_loss_share(lines, vf_coef)}


def first_last(metrics: list[dict], key: str) -> tuple[float | None, float | None]:
    """`key` at the first and the last logged line that has it."""
    values = [m[key] for m in metrics if key in m]
    return (values[0], values[-1]) if values else (None, None)


def align_figures(metrics: list[dict], scores: list[dict]) -> dict:
    """DPO/ORPO: rewards/accuracies and rewards/margins at the first vs the last logged step, and the judge's score of
    the trained minus the base answer per evaluation prompt (mean and 95% band)."""
    acc_first, acc_last = first_last(metrics, "rewards/accuracies")
    margin_first, margin_last = first_last(metrics, "rewards/margins")
    deltas = [r["trained_score"] - r["base_score"] for r in scores]
    delta, low, high = mean_band(deltas) if deltas else (None, None, None)
    return {"accuracy_first": acc_first, "accuracy_last": acc_last, "margin_first": margin_first,
            "margin_last": margin_last, "judge_delta": delta, "judge_low": low, "judge_high": high,
            "prompts": len(deltas), "answers_changed": sum(r.get("trained") != r.get("base") for r in scores)}
