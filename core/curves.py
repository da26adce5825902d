"""Training curves from run folders: which logged keys each chart shows, with the one line that says what to look
for, and long-format rows (step, value, series) for several runs at once, so runs overlay on one chart."""
from __future__ import annotations

import re
from dataclasses import dataclass

from core.runfolder import RunInfo, last_per_step, read_lines


@dataclass(frozen=True)
class Chart:
    title: str
    keys: tuple[str, ...]  # logged keys drawn as lines; absent keys are skipped (DPO runs have no ORPO terms)
    look_for: str  # one line under the chart: what a class should look for
    smooth: bool = False  # add an exponential moving average of the first key
    method: str = ""  # only runs trained with this method (config.json's "method"); "": every run


ALIGN_CHARTS = (
    Chart("Loss", ("loss",),
          "It should fall and flatten; a sudden jump usually means the learning rate is too high."),
    Chart("DPO implicit rewards (β · log-ratio of the answer's probability to the reference model's)",
          ("rewards/chosen", "rewards/rejected", "rewards/margins"),
          "The margin should grow. A falling rejected reward with a flat chosen reward means the model learns to "
          "avoid, not to prefer.", method="dpo"),
    # trl's ORPOTrainer logs rewards/* as beta times the answer's mean token log-probability (no reference model)
    Chart("ORPO rewards (β · mean token log p of the answer; no reference model)",
          ("rewards/chosen", "rewards/rejected", "rewards/margins"),
          "Both are below 0 (log-probabilities); the margin should grow as chosen answers become likelier than "
          "rejected ones (lite's 3 quick steps move the NLL first: the margin had not grown yet).", method="orpo"),
    Chart("Preference accuracy", ("rewards/accuracies",),
          "The share of pairs whose chosen answer out-scores the rejected one; 0.5 is a coin flip."),
    Chart("ORPO terms", ("nll_loss", "log_odds_ratio", "log_odds_chosen"),
          "nll_loss is the plain fine-tuning part on chosen answers; log_odds_chosen above 0 means chosen answers "
          "have become likelier than rejected ones (ORPO runs only)."),
    Chart("Learning rate", ("learning_rate",), "It warms up, then decays to zero by the last step (the schedule "
          "of one epoch)."),
    Chart("Gradient norm", ("grad_norm",), "Spikes mark unstable steps; a norm that keeps growing means the "
          "learning rate is too high for the adapter."),
)

RL_CHARTS = (
    Chart("Mean reward (ROUGE-1 F1)", ("reward",), "A healthy run rises slowly and noisily (the smoothed line shows "
          "the trend); with 'KL too strong' it falls, with 'no KL' it rises while the text degenerates.", smooth=True),
    Chart("KL to the reference", ("kl",), "How far the policy has moved from where it started. Without a KL penalty it "
          "keeps growing: the model drifts to whatever ROUGE rewards, readable or not."),
    Chart("Losses", ("policy_loss", "value_loss", "loss"),
          "A value loss that dwarfs the policy loss means updates mostly fit the critic; high vf_coef raises its share "
          "(lite: from a tenth to about half of the shared loss)."),
    Chart("Clipping and entropy", ("clipfrac", "clip_ratio/region_mean", "entropy"),
          "A clip fraction near 0 means tiny updates, well above 0.2 too large ones; falling entropy means the "
          "policy is becoming sure of itself."),
    Chart("Response length (tokens)", ("response_length", "completions/mean_length"),
          "Compare with step 1: a length that drifts to nothing or to the limit (max new tokens) while the reward "
          "rises is a sign of reward hacking; one that sits at the limit from step 1 on only means the model has not "
          "learned to stop (usual for lite's 48 tokens)."),
    Chart("KL coefficient β (PPO) and reward spread (GRPO)", ("beta", "reward_std"),
          "The adaptive controller raises β when KL overshoots its target; GRPO learns only where rewards differ."),
)


def ema(values: list[float], alpha: float = 0.2) -> list[float]:
    """Exponential moving average: s_t = alpha * x_t + (1 - alpha) * s_{t-1}, s_0 = x_0."""
    out, current = [], None
    for v in values:
        current = v if current is None else alpha * v + (1 - alpha) * current
        out.append(current)
    return out


# {UTC stamp}-{preset}-{method}, as tabs.run_panel.run_name names a run, [-n] when that folder existed already
TAB_RUN_NAME = re.compile(r"\d{8}-\d{6}-(.+)-([a-z]+)(?:-\d+)?")


def run_labels(runs: list[RunInfo]) -> list[str]:
    """Brief legend names: runs named {stamp}-{preset}-{method} read by what tells them apart ("healthy",
    "kl-too-strong"; "dpo", "orpo"; else "preset · method"); another name stays as it is; a name two runs share
    gets "#2", "#3" in order."""
    named = [TAB_RUN_NAME.fullmatch(run.run_id) for run in runs]
    if all(named):  # the part that tells the runs apart, or both
        parts = [i for i in (1, 2) if len({m[i] for m in named}) > 1] or [1, 2]
        names = [" · ".join(m[i] for i in parts) for m in named]
    else:
        names = [f"{m[1]} · {m[2]}" if m else run.run_id for m, run in zip(named, runs)]
    labels, seen = [], {}
    for label in names:
        seen[label] = seen.get(label, 0) + 1
        labels.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return labels


def chart_rows(runs: list[RunInfo], chart: Chart) -> list[dict]:
    """[{step, value, series}] for every key of `chart` logged by each run. One run: series = the key; several
    runs overlaid: the run's label (run_labels), then the key when the chart draws several."""
    rows = []
    for run, label in zip(runs, run_labels(runs)):
        if chart.method and run.config.get("method") != chart.method:
            continue
        metrics = read_lines(run.folder / "metrics.jsonl")
        for key in chart.keys:
            points = [(m["step"], float(m[key])) for m in last_per_step(metrics, key)]
            if not points:
                continue
            name = key if len(runs) == 1 else label if len(chart.keys) == 1 else f"{label} · {key}"
            rows += [{"step": step, "value": value, "series": name} for step, value in points]
            if chart.smooth and key == chart.keys[0]:
                smoothed = ema([v for _, v in points])
                rows += [{"step": step, "value": value, "series": f"{name} (smoothed)"}
                         for (step, _), value in zip(points, smoothed)]
    return rows
