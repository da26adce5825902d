"""Charts watched from their first, empty update: gradio types each axis from the frame's dtypes, and a chart first
drawn from an empty object-typed frame kept the "nominal" type when numbers arrived (values as categories, no
line: seen in the browser on a run watched from step 0). Every live chart's frame is typed, empty or not."""
import gradio as gr

from core import curves
from core.jobs import RunRecorder
from core.runs import runs_dir
from tabs import align_after, training
from tabs.common import plot_frame

NUMBERS = {"x": "int64", "y": "float64", "who": "object"}


def axis_types(plot, frame) -> dict:
    return plot.postprocess(frame).datatypes


def test_an_empty_frame_keeps_numeric_axes():
    plot = gr.LinePlot(None, x="x", y="y", color="who")
    assert axis_types(plot, plot_frame([], NUMBERS)) == {"x": "quantitative", "y": "quantitative", "who": "nominal"}
    full = plot_frame([{"x": 1, "y": 0.5, "who": "a"}, {"x": 2, "y": 1, "who": "a"}], NUMBERS)
    assert axis_types(plot, full) == {"x": "quantitative", "y": "quantitative", "who": "nominal"}
    assert full["y"].tolist() == [0.5, 1.0]


def test_a_run_polled_before_its_first_step_then_after_it_draws_numbers_both_times():
    recorder = RunRecorder(runs_dir() / "rl" / "20261201-000000-ppo")
    recorder.write_config({"algo": "ppo", "max_steps": 2})
    on_tick = training.poll_handler("rl", curves.RL_CHARTS)
    plot = gr.LinePlot(None, x="step", y="value", color="series")
    seen = None
    for step in (0, 1, 2):
        if step:
            recorder.log(step, 2, {"reward": 0.1 * step, "kl": 0.01 * step})
        _progress, reward, kl, *_rest, seen = on_tick([recorder.run_id], seen)
        assert len(reward) == 2 * step, "reward and its smoothed line, a point per step"
        for frame in (reward, kl):
            assert axis_types(plot, frame) == {"step": "quantitative", "value": "quantitative", "series": "nominal"}


def test_the_mean_reward_bars_of_runs_not_scored_yet_are_numeric():
    _table, bars = align_after.comparison_frames([])
    assert bars.empty and axis_types(gr.BarPlot(None, x="method", y="mean reward"), bars)["mean reward"] == \
        "quantitative"
