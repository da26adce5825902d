"""The trainer's after-training figure: each compared run's mean reward of the base answers beside its trained
answers, values on the bars. A Figure object (no pyplot state), so server threads are safe."""
from __future__ import annotations

ANSWERS = {"base": "#9e9e9e", "trained": "#3949ab"}  # who answered -> bar colour


def reward_bars(rows: list[dict]):
    """Grouped bars from comparison_row dicts: one group per run (its method), base and trained side by side, each
    labelled with its mean reward: a matplotlib Figure, None when no run has a score yet."""
    from matplotlib.figure import Figure  # loads only when runs are compared
    rows = [r for r in rows if r["base reward"] is not None or r["trained reward"] is not None]
    if not rows:
        return None
    fig = Figure(figsize=(8, 3.4), layout="constrained")
    ax = fig.add_subplot()
    width = 0.38
    for i, (who, colour) in enumerate(ANSWERS.items()):
        xs = [g + (i - 0.5) * width for g in range(len(rows))]
        values = [r[f"{who} reward"] for r in rows]
        bars = ax.bar(xs, [v or 0.0 for v in values], width, label=f"{who} answers", color=colour)
        ax.bar_label(bars, labels=["" if v is None else f"{v:.3f}" for v in values], padding=2, fontsize=9)
    ax.set_xticks(range(len(rows)), [r["method"] or r["run"] for r in rows])
    ax.axhline(0, color="#888", linewidth=0.6)
    ax.margins(y=0.15)  # room for the labels above the tallest bar
    ax.set_ylabel("mean reward")
    ax.legend(loc="upper left", fontsize=8, ncols=2)
    ax.set_title("Mean reward of the answers: base model vs trained adapter", fontsize=10)
    return fig
