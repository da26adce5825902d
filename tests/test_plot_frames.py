"""Charts watched from their start, as a class watches a run: gradio 6.31 types each axis from the frame's dtypes
(an empty frame's object columns read as nominal), and a chart first drawn from an empty frame drew no lines for
the frames that followed (both seen in the browser). Frames are typed; a live chart with no points is cleared."""
import gradio as gr

from core import curves
from core.runfolder import RunRecorder
from core.runs import runs_dir
from tabs import align_after, run_panel
from tabs.common import plot_frame

NUMBERS = {"x": "int64", "y": "float64", "who": "object"}


def axis_types(plot, frame) -> dict:
    return plot.postprocess(frame).datatypes


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
    _progress, *charts, _table, _picker, _selected, seen = on_tick([recorder.run_id], None)
    assert charts == [None] * len(curves.RL_CHARTS)
    for step in (1, 2):
        recorder.log(step, 2, {"reward": 0.1 * step, "kl": 0.01 * step})
        _progress, reward, kl, *rest, seen = on_tick([recorder.run_id], seen)
        assert len(reward) == 2 * step and len(kl) == step, "reward and its smoothed line, a point per step"
        assert all(frame is None for frame in rest[:len(curves.RL_CHARTS) - 2]), "keys not logged: cleared"
        for frame in (reward, kl):
            assert axis_types(plot, frame) == {"step": "quantitative", "value": "quantitative", "series": "nominal"}


def test_the_mean_reward_bars_of_runs_not_scored_yet_clear_the_plot():
    table, bars = align_after.comparison_frames([])
    assert table.empty and bars is None
