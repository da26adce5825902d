"""Training curves from run folders: which logged keys each chart shows, with the one line that says what to look
for, and long-format rows (step, value, series) for several runs at once, so runs overlay on one chart."""
from __future__ import annotations

from dataclasses import dataclass

from core.runfolder import RunInfo, last_per_step, read_lines


@dataclass(frozen=True)
class Chart:
    title: str
    keys: tuple[str, ...]  # logged keys drawn as lines; absent keys are skipped (DPO runs have no ORPO terms)
    look_for: str  # one line under the chart: what a class should look for
    smooth: bool = False  # add an exponential moving average of the first key


ALIGN_CHARTS = (
    Chart("Loss", ("loss",),
          "It should fall and flatten; a sudden jump usually means the learning rate is too high."),
    Chart("Implicit rewards (β · log-ratio to the reference)",
          ("rewards/chosen", "rewards/rejected", "rewards/margins"),
          "The margin should grow. A falling rejected reward with a flat chosen reward means the model learns to "
          "avoid, not to prefer."),
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
          "A value loss that dwarfs the policy loss (high vf_coef) means updates mostly fit the critic."),
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


def chart_rows(runs: list[RunInfo], chart: Chart) -> list[dict]:
    """[{step, value, series}] for every key of `chart` logged by each run; series = "<run id> · <key>" when several
    runs overlay, else the key."""
    rows = []
    for run in runs:
        metrics = read_lines(run.folder / "metrics.jsonl")
        for key in chart.keys:
            points = [(m["step"], float(m[key])) for m in last_per_step(metrics, key)]
            if not points:
                continue
            name = key if len(runs) == 1 else f"{run.run_id} · {key}"
            rows += [{"step": step, "value": value, "series": name} for step, value in points]
            if chart.smooth and key == chart.keys[0]:
                smoothed = ema([v for _, v in points])
                rows += [{"step": step, "value": value, "series": f"{name} (smoothed)"}
                         for (step, _), value in zip(points, smoothed)]
    return rows
