"""Training curves from run folders: keys per chart, runs overlaid, a resumed run's repeated steps, smoothing."""
import json

import pytest

from core import curves, runfolder


def run_with(tmp_path, name: str, lines: list[dict]) -> runfolder.RunInfo:
    folder = tmp_path / "align" / name
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return runfolder.read_run(folder)


def chart(title_start: str) -> curves.Chart:
    return next(c for c in curves.ALIGN_CHARTS if c.title.startswith(title_start))


def test_rows_per_key_and_runs_overlay_under_their_names(tmp_path):
    a = run_with(tmp_path, "dpo-1", [{"step": 1, "loss": 0.7, "grad_norm": 2.0}, {"step": 2, "loss": 0.6}])
    b = run_with(tmp_path, "orpo-1", [{"step": 1, "loss": 1.5}])
    one = curves.chart_rows([a], curves.ALIGN_CHARTS[0])
    assert one == [{"step": 1, "value": 0.7, "series": "loss"}, {"step": 2, "value": 0.6, "series": "loss"}]
    both = curves.chart_rows([a, b], curves.ALIGN_CHARTS[0])
    assert {r["series"] for r in both} == {"dpo-1", "orpo-1"} and len(both) == 3, "one key: the run names it"
    terms = curves.chart_rows([a, run_with(tmp_path, "orpo-2", [{"step": 1, "nll_loss": 0.1, "log_odds_ratio": -1}])],
                              chart("ORPO terms"))
    assert [r["series"] for r in terms] == ["orpo-2 · nll_loss", "orpo-2 · log_odds_ratio"], "several keys: run, key"
    assert curves.chart_rows([b], chart("ORPO terms")) == [], "no ORPO terms logged: nothing drawn"


@pytest.mark.parametrize("run_ids, labels", [
    (["20261201-101500-healthy-ppo", "20261201-101800-no-kl-grpo"], ["healthy · ppo", "no-kl · grpo"]),  # both
    (["20261201-101500-healthy-ppo", "20261201-101800-no-kl-ppo"], ["healthy", "no-kl"]),  # the presets differ
    (["20261201-101500-quick-dpo", "20261201-101500-quick-orpo"], ["dpo", "orpo"]),  # the methods differ
    (["20261201-101500-quick-dpo", "20261201-101500-quick-dpo-1"], ["quick · dpo", "quick · dpo #2"]),  # same name
    (["20261201-101500-quick-dpo", "my-run"], ["quick · dpo", "my-run"]),  # not named by a tab: kept as it is
])
def test_legends_name_runs_by_preset_and_method(tmp_path, run_ids, labels):
    runs = [run_with(tmp_path, name, [{"step": 1, "loss": 1.0}]) for name in run_ids]
    assert curves.run_labels(runs) == labels
    assert [r["series"] for r in curves.chart_rows(runs, curves.ALIGN_CHARTS[0])] == labels


def test_a_resumed_runs_repeated_steps_keep_the_last_value(tmp_path):
    run = run_with(tmp_path, "dpo-2", [{"step": 1, "loss": 0.9}, {"step": 2, "loss": 0.8}, {"step": 3, "loss": 0.7},
                                       {"step": 2, "loss": 0.5}, {"step": 3, "loss": 0.4}])  # resumed from step 1
    assert [(r["step"], r["value"]) for r in curves.chart_rows([run], curves.ALIGN_CHARTS[0])] == \
        [(1, 0.9), (2, 0.5), (3, 0.4)]


def test_the_reward_chart_adds_its_moving_average(tmp_path):
    run = run_with(tmp_path, "ppo-1", [{"step": s, "reward": r} for s, r in ((1, 0.0), (2, 1.0), (3, 1.0))])
    rows = curves.chart_rows([run], curves.RL_CHARTS[0])
    smoothed = [r["value"] for r in rows if r["series"] == "reward (smoothed)"]
    assert smoothed == pytest.approx([0.0, 0.2, 0.36])  # s_t = 0.2 x_t + 0.8 s_(t-1)


def test_dpo_and_orpo_rewards_are_charted_apart_under_what_each_logs(tmp_path):
    """Both trainers log rewards/chosen, but DPO's is β · log-ratio to the reference and ORPO's β · mean log p with no
    reference: one chart for both would put two different quantities on one axis."""
    runs = {}
    for method, value in (("dpo", 0.3), ("orpo", -0.1)):
        runs[method] = run_with(tmp_path, f"{method}-3", [{"step": 1, "rewards/chosen": value}])
        (runs[method].folder / "config.json").write_text(json.dumps({"method": method}))
        runs[method] = runfolder.read_run(runs[method].folder)
    for method, says in (("dpo", "log-ratio of the answer's probability to the reference"),
                         ("orpo", "mean token log p of the answer; no reference model")):
        drawn = curves.chart_rows(list(runs.values()), chart(method.upper()))
        assert says in chart(method.upper()).title
        assert {r["series"] for r in drawn} == {f"{method}-3 · rewards/chosen"}, drawn


def test_every_chart_says_what_to_look_for():
    for chart in curves.ALIGN_CHARTS + curves.RL_CHARTS:
        assert chart.keys and len(chart.look_for) > 40, chart.title
