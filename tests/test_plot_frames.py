"""Charts watched from their start, as a class watches a run, and runs overlaid on them: gradio 6.31 types each axis
from the frame's dtypes (an empty frame's object columns read as nominal) and fixes a plot's series (its colour
domain and legend) when it embeds the plot, so a chart first drawn from an empty frame, or a frame whose series
changed, drew no lines (both seen in the browser). Frames are typed; a chart whose series change is cleared, then
drawn; the mean-reward bars are grouped with their values."""
import gradio as gr
import pytest

from core import align, curves
from core.runfolder import RunRecorder
from core.runs import runs_dir
from tabs import align_after, run_panel
from tabs.common import curve_updates, plot_frame

NUMBERS = {"x": "int64", "y": "float64", "who": "object"}


def axis_types(plot, frame) -> dict:
    return plot.postprocess(frame).datatypes


def ticks(on_tick, selected, seen):
    """Every update one poll sends, in order, and the `seen` state it leaves."""
    updates = list(on_tick(selected, seen))
    return updates, updates[-1][-1]


def value(update):
    return update["value"] if isinstance(update, dict) else update


def test_rows_become_a_typed_frame_and_no_rows_clear_the_plot():
    plot = gr.LinePlot(None, x="x", y="y", color="who")
    assert plot_frame([], NUMBERS) is None
    whole = plot_frame([{"x": 1, "y": 1, "who": "a"}, {"x": 2, "y": 2, "who": "a"}], NUMBERS)
    assert whole["y"].dtype == "float64", "integral values stay a float column"
    assert axis_types(plot, whole) == {"x": "quantitative", "y": "quantitative", "who": "nominal"}


def test_a_run_polled_before_its_first_step_then_after_it_clears_then_draws_numbers():
    """Before step 1 each chart is cleared (None); a chart first drawn from an empty frame drew nothing later."""
    recorder = RunRecorder(runs_dir() / "rl" / "20261201-000000-ppo")
    recorder.write_config({"algo": "ppo", "max_steps": 2})
    on_tick = run_panel.poll_handler("rl", curves.RL_CHARTS)
    plot = gr.LinePlot(None, x="step", y="value", color="series")
    [(_progress, *charts, _table, _picker, _selected, seen)], _ = ticks(on_tick, [recorder.run_id], None)
    assert charts == [None] * len(curves.RL_CHARTS)
    for step in (1, 2):
        recorder.log(step, 2, {"reward": 0.1 * step, "kl": 0.01 * step})
        [(_progress, reward, kl, *rest)], seen = ticks(on_tick, [recorder.run_id], seen)
        assert len(value(reward)) == 2 * step and len(value(kl)) == step, "reward and its smoothed line"
        assert all(frame is None for frame in rest[:len(curves.RL_CHARTS) - 2]), "keys not logged: cleared"
        for frame in (reward, kl):
            assert axis_types(plot, value(frame)) == {"step": "quantitative", "value": "quantitative",
                                                      "series": "nominal"}


def test_a_second_run_picked_clears_each_drawn_chart_then_draws_both_runs():
    """The bug: picking a second run renamed every series ("<run> · reward"), and each chart drawn before kept its
    old series and legend and drew no line. Each chart drawn before is now cleared first, then drawn afresh."""
    names = ["20261201-000000-healthy-ppo", "20261201-000100-kl-too-strong-ppo"]
    for name in names:
        recorder = RunRecorder(runs_dir() / "rl" / name)
        recorder.write_config({"algo": "ppo", "max_steps": 2})
        recorder.log(1, 2, {"reward": 0.1, "kl": 0.01})
    on_tick = run_panel.poll_handler("rl", curves.RL_CHARTS)
    [(_progress, reward, kl, *_rest)], seen = ticks(on_tick, names[:1], None)
    assert set(value(reward)["series"]) == {"reward", "reward (smoothed)"}
    [clear, draw], seen = ticks(on_tick, names, seen)
    assert clear[1:3] == (None, None), "the reward and KL charts were drawn: both cleared first"
    assert all(update == gr.skip() for update in clear[3:]), "charts never drawn and the rest are left as they are"
    assert set(value(draw[1])["series"]) == {"healthy", "healthy (smoothed)", "kl-too-strong",
                                              "kl-too-strong (smoothed)"}
    assert set(value(draw[2])["series"]) == {"healthy", "kl-too-strong"}
    recorder.log(2, 2, {"reward": 0.2, "kl": 0.02})
    updates, _ = ticks(on_tick, names, seen)
    assert len(updates) == 1, "a new step of the same series is drawn into the chart as it is, no clearing"


def test_a_short_run_keeps_whole_step_ticks_and_a_long_one_scales():
    short = plot_frame([{"step": 1, "value": 1.0, "series": "loss"}], run_panel.CURVE_COLUMNS)
    long = plot_frame([{"step": s, "value": 1.0, "series": "loss"} for s in range(1, 9)], run_panel.CURVE_COLUMNS)
    _clear, draw, layouts = curve_updates([short, long], None)
    assert [d["x_lim"] for d in draw] == [[0, 5], None], "fewer than 5 steps: the axis spans 0..5 whole steps"
    clear, _draw, _layouts = curve_updates([long, long], layouts)
    assert clear == [None, gr.skip()], "its x range changed: cleared, then drawn with the new range"


def test_the_mean_reward_bars_of_runs_not_scored_yet_clear_the_plot():
    times, table, bars = align_after.comparison_frames([])
    assert times.empty and table.empty and bars is None


def test_the_mean_reward_bars_stand_side_by_side_with_their_values():
    """The bug: base 2.217 was stacked on trained 2.159, a bar reaching 4.4."""
    rows = [{"method": "DPO", "run": "a", "base reward": 2.217, "trained reward": 2.159},
            {"method": "ORPO", "run": "b", "base reward": 2.217, "trained reward": 2.301}]
    ax = align.reward_bars(rows).axes[0]
    bars = [b for container in ax.containers for b in container]
    assert [b.get_height() for b in bars] == pytest.approx([2.217, 2.217, 2.159, 2.301]), "none stacked"
    assert all(b.get_y() == 0 for b in bars), "every bar starts at zero"
    lefts = sorted(b.get_x() for b in bars)
    assert all(right - left >= bars[0].get_width() - 1e-9 for left, right in zip(lefts, lefts[1:])), "no overlap"
    assert sorted(t.get_text() for t in ax.texts) == ["2.159", "2.217", "2.217", "2.301"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["DPO", "ORPO"]
