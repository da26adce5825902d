"""Matplotlib figures for the reward explorer: attribute bars with the gating line (the course notebook's chart) and the
reward distributions over the quantile levels for one pair; margins, reward against length and per-attribute accuracy
over a data set. Built as Figure objects (no pyplot state), so threads are safe."""
from __future__ import annotations

import math

from matplotlib.figure import Figure

from core.reward.pairs import PairsResult
from core.reward.pipeline import RewardResult

COLORS = {"chosen": "#2e7d32", "rejected": "#c62828"}
OTHER_COLORS = ["#1565c0", "#6a1b9a", "#ef6c00", "#00838f"]


def _color(label: str, i: int) -> str:
    return COLORS.get(label, OTHER_COLORS[i % len(OTHER_COLORS)])


def _title(result: RewardResult) -> str:
    parts = [f"{label} {s.score:.3f}" for label, s in zip(result.labels, result.scores)]
    if result.margin is not None:
        parts.append(f"margin {result.margin:+.3f}")
    return " · ".join(parts)


def _value_label(result: RewardResult) -> str:
    return {"judge": "expected rating (1-5)", "qrm": "attribute reward"}.get(result.scorer, "reward")


def attribute_figure(result: RewardResult) -> Figure:
    """Grouped bars per attribute, one colour per answer; QRM's gating coefficients as a line on a second axis."""
    fig = Figure(figsize=(8, 4.2), layout="constrained")
    ax = fig.add_subplot()
    names = result.attributes or ["score"]
    width = 0.8 / len(result.scores)
    for i, (label, s) in enumerate(zip(result.labels, result.scores)):
        values = s.rewards if s.rewards is not None else [s.score]
        xs = [x - 0.4 + width * (i + 0.5) for x in range(len(names))]
        ax.bar(xs, values, width, label=label, color=_color(label, i))
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel(_value_label(result))
    if result.scorer == "judge":
        ax.set_ylim(1, 5)  # the rating scale
    else:
        ax.axhline(0, color="#888", linewidth=0.6)
    gating = result.scores[0].gating
    if gating is not None:
        twin = ax.twinx()
        twin.plot(range(len(names)), gating, "o-", color="#333", label="gating coefficient")
        twin.set_ylim(0, max(1.0, max(gating) * 1.1))
        twin.set_ylabel("gating coefficient (from the prompt)")
        twin.legend(loc="upper right", fontsize=8)
    else:
        note = ("no gate: an LLM judge, its final score is the plain mean of the five ratings"
                if result.scorer == "judge" else "single-score reward model: no attributes, no gate")
        ax.text(0.5, -0.16, note, transform=ax.transAxes, ha="center", fontsize=8, color="#555")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(_title(result), fontsize=10)
    return fig


def distribution_figure(result: RewardResult, per_attribute: bool = False) -> Figure:
    """Quantiles of each answer's final-score distribution over the levels (dashed: its score); with
    per_attribute, one panel per attribute and the final score's last."""
    if per_attribute and result.scores[0].attribute_quantiles is not None:
        return _per_attribute_figure(result)
    fig = Figure(figsize=(8, 4.2), layout="constrained")
    ax = fig.add_subplot()
    if result.scores[0].score_quantiles is None:
        ax.text(0.5, 0.5, "this reward model gives a single score, not a distribution", ha="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    _plot_quantiles(ax, result, [s.score_quantiles for s in result.scores], [s.score for s in result.scores])
    ax.set_ylabel("final score" if result.scorer == "qrm" else "mean rating (1-5)")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Reward distribution · " + _title(result), fontsize=10)
    return fig


def _plot_quantiles(ax, result: RewardResult, series: list[list[float]], means: list[float] | None = None) -> None:
    for i, (label, values) in enumerate(zip(result.labels, series)):
        color = _color(label, i)
        ax.plot(result.levels, values, "o-", markersize=2.5, color=color, label=label)
        if means is not None:
            ax.axhline(means[i], color=color, linestyle="--", linewidth=0.8, label=f"{label} score")
    ax.set_xlabel("quantile level", fontsize=8)


def _per_attribute_figure(result: RewardResult) -> Figure:
    fig = Figure(figsize=(8, 5.4), layout="constrained")
    axes = fig.subplots(2, 3, sharex=True).flatten()
    for a, name in enumerate(result.attributes):
        _plot_quantiles(axes[a], result, [s.attribute_quantiles[a] for s in result.scores])
        axes[a].set_title(name, fontsize=9)
    _plot_quantiles(axes[5], result, [s.score_quantiles for s in result.scores], [s.score for s in result.scores])
    axes[5].set_title("final score", fontsize=9)
    axes[0].set_ylabel(_value_label(result))
    axes[0].legend(fontsize=7)
    fig.suptitle("Per-attribute reward distributions · " + _title(result), fontsize=10)
    return fig


def _r(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def _accuracy_title(result: PairsResult) -> str:
    low, high = result.interval
    return (f"accuracy {result.accuracy:.1%} [95% CI {low:.1%}-{high:.1%}] over {len(result.pairs)} pairs · "
            f"mean margin {result.mean_margin:+.3f}")


def _edges_at_zero(values: list[float], bins: int) -> list[float]:
    """About `bins` histogram edges of equal width with 0 among them, so no bar straddles right and wrong."""
    low, high = min(min(values), 0.0), max(max(values), 0.0)
    width = (high - low) / bins or 1.0
    first, last = math.floor(low / width), max(math.ceil(high / width), math.floor(low / width) + 1)
    edges = [k * width for k in range(first, last + 1)]
    edges[0], edges[-1] = min(edges[0], low), max(edges[-1], high)  # rounding must not drop the extremes
    return edges


def margin_figure(result: PairsResult) -> Figure:
    """Histogram of chosen - rejected margins, stacked: pairs the model gets right (margin > 0) in green, wrong ones
    (ties included) in red."""
    fig = Figure(figsize=(6, 3.8), layout="constrained")
    ax = fig.add_subplot()
    margins = [p.margin for p in result.pairs]
    edges = _edges_at_zero(margins, max(6, min(30, len(margins) // 2)))
    ax.hist([[m for m in margins if m <= 0], [m for m in margins if m > 0]], bins=edges, stacked=True,
            color=[COLORS["rejected"], COLORS["chosen"]], label=["wrong (margin <= 0)", "right (margin > 0)"])
    ax.axvline(0, color="#333", linewidth=1.0)
    ax.set_xlabel("margin: chosen score - rejected score")
    ax.set_ylabel("pairs")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(_accuracy_title(result), fontsize=9)
    return fig


def length_figure(result: PairsResult) -> Figure:
    """Each answer's reward against its length in tokens, chosen and rejected in their colours, with Pearson r."""
    fig = Figure(figsize=(6, 3.8), layout="constrained")
    ax = fig.add_subplot()
    r = result.length_correlation()
    for label in ("chosen", "rejected"):
        ax.scatter([getattr(p, f"{label}_tokens") for p in result.pairs],
                   [getattr(p, f"{label}_score") for p in result.pairs], s=14, alpha=0.75, color=COLORS[label],
                   label=f"{label} (r = {_r(r[label])})")
    ax.set_xlabel("answer length (tokens)")
    ax.set_ylabel("mean rating (1-5)" if result.scorer == "judge" else "reward")
    ax.legend(loc="best", fontsize=8)
    ax.set_title(f"Reward against answer length · all answers r = {_r(r['all'])}\nthe longer answer is the chosen "
                 f"one in {result.longer_chosen:.0%} of pairs", fontsize=9)
    return fig


def attribute_accuracy_figure(result: PairsResult) -> Figure:
    """Per attribute, the fraction of pairs whose chosen answer gets the higher attribute reward; lines at the final
    score's accuracy and at chance."""
    fig = Figure(figsize=(6, 3.8), layout="constrained")
    ax = fig.add_subplot()
    accuracy = result.attribute_accuracy()
    if not accuracy:
        ax.text(0.5, 0.5, "single-score reward model: no attributes to compare", ha="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    ax.barh(list(accuracy), list(accuracy.values()), color="#6a1b9a")
    ax.axvline(result.accuracy, color="#2e7d32", linestyle="--", label=f"final score {result.accuracy:.1%}")
    ax.axvline(0.5, color="#888", linestyle=":", label="coin flip 50%")
    ax.set_xlim(0, 1)
    ax.invert_yaxis()  # attributes top to bottom in the model's order
    ax.set_xlabel("fraction of pairs where chosen > rejected on this attribute")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, fontsize=8)
    ax.set_title("Which attribute separates the pairs" + (" (the judge's ratings)" if result.scorer == "judge"
                                                          else ""), fontsize=9)
    return fig
