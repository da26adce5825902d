"""DPO / ORPO training on a tiny random Llama: every LoRA parameter moves and no base weight does, the run folder's
records, Stop and save, a killed job resumed from its checkpoint, the CLI, and bad data or run folders refused with
ValueErrors. (Settings, the estimator and the LM-head stand-in: test_align_plan.py.)"""
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest
import torch

from core import align, flags, runfolder
from core import __main__ as core_main
from core.align import AlignConfig
from core.align import job as align_job
from core.generation import GenerationConfig, generate
from core.loaders import load_language_model
from core.runfolder import RunRecorder
from core.runs import REPO_ROOT, new_run_dir, runs_dir
from tests.align_tiny import pair, tiny_config, write_pairs

TRL_KEYS = {"loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
            "logps/rejected", "learning_rate", "grad_norm", "tokens_per_second", "peak_rss_gb"}
ORPO_KEYS = {"nll_loss", "log_odds_ratio", "log_odds_chosen"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices: one thread is fastest, and on a shared 2-core machine a second one only waits (10x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    return write_pairs(tmp_path_factory.mktemp("data") / "pairs.jsonl", [pair(i) for i in range(12)])


@dataclass
class Trained:
    cfg: AlignConfig
    run_dir: object
    figures: dict
    trainer: object
    before: dict
    recorder: RunRecorder


@pytest.fixture(scope="module", params=align.METHODS)
def trained(request, tiny_lm_dir, pairs_file, tmp_path_factory):
    """One two-step run per method, with the trainer and its parameters as they were before training."""
    made = {}

    def spy(*args, **kwargs):
        trainer = real(*args, **kwargs)
        made.update(trainer=trainer, before={n: p.detach().clone() for n, p in trainer.model.named_parameters()})
        return trainer

    real = align_job.make_trainer
    cfg = tiny_config(tiny_lm_dir, pairs_file, method=request.param)
    run_dir = tmp_path_factory.mktemp(f"run-{request.param}")
    recorder = RunRecorder(run_dir)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(align_job, "make_trainer", spy)
        figures = align.train(cfg, recorder)
    return Trained(cfg, run_dir, figures, made["trainer"], made["before"], recorder)


def test_two_steps_change_every_lora_parameter_and_no_base_weight(trained):
    params = dict(trained.trainer.model.named_parameters())
    trainable = [n for n, p in params.items() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    unchanged = [n for n in trainable if torch.equal(trained.before[n], params[n].detach())]
    assert not unchanged, f"{trained.cfg.method}: LoRA parameters that did not move: {unchanged}"
    moved = [n for n, p in params.items() if not p.requires_grad and not torch.equal(trained.before[n], p.detach())]
    assert not moved, f"{trained.cfg.method}: frozen base weights changed: {moved}"


def test_metrics_carry_trls_values_tokens_per_second_and_peak_memory(trained):
    steps = [r for r in runfolder.read_lines(trained.run_dir / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2] and all(r["max_steps"] == 2 for r in steps)
    expected = TRL_KEYS | (ORPO_KEYS if trained.cfg.method == "orpo" else set())
    for record in steps:
        assert expected <= set(record), f"missing {sorted(expected - set(record))}"
        assert record["tokens_per_second"] > 0 and record["peak_rss_gb"] > 0


def test_config_summary_figures_adapter_and_answers(trained):
    config = json.loads((trained.run_dir / "config.json").read_text())
    assert (config["method"], config["max_steps"], config["micro_batch"], config["grad_accum"]) == \
        (trained.cfg.method, 2, 2, 2)
    assert config["backend"] == "transformers+peft" and config["optim"] == "adamw_torch" and config["pairs_used"] == 8
    figures = trained.figures
    assert (figures["status"], figures["steps_done"], figures["max_steps"]) == ("finished", 2, 2)
    assert figures["seconds_per_step"] > 0 and figures["tokens_per_second"] > 0 and figures["final_loss"] > 0
    adapter = json.loads((trained.run_dir / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and set(adapter["target_modules"]) == set(align.TARGET_MODULES)
    answers = json.loads((trained.run_dir / "answers.json").read_text())
    assert len(answers) == 1 and set(answers[0]) == {"prompt", "base", "trained"}
    assert answers[0]["prompt"].startswith("Question ")


def test_the_job_laps_load_train_and_answer(trained):
    """The Q9 table's wall time split: every phase was timed, training covers the trainer's own clock, and the
    phases add up to no more than the run's elapsed time."""
    phases = trained.recorder.phases
    assert set(phases) == set(runfolder.PHASES) and all(s > 0 for s in phases.values()), phases
    assert phases["train"] >= trained.figures["train_seconds"]
    assert sum(phases.values()) <= time.perf_counter() - trained.recorder.started


def test_each_run_answers_with_its_own_adapter(tiny_lm_dir, pairs_file):
    """DPO and ORPO on the same data: each run's trained answers are what its own saved adapter says greedily, its
    base answers what the adapter-free model says, and the two adapters answer differently (in lite the two runs'
    answers were byte-identical: both adapters had flipped the same near-tied token)."""
    runs = {}
    for method in align.METHODS:
        cfg = tiny_config(tiny_lm_dir, pairs_file, method=method, eval_prompts=3, max_new_tokens=6, learning_rate=2e-2)
        run_dir = new_run_dir("align")
        align.train(cfg, RunRecorder(run_dir))
        runs[method] = (cfg, run_dir, json.loads((run_dir / "answers.json").read_text()))
    for method, (cfg, run_dir, answers) in runs.items():
        lm = load_language_model(str(run_dir / "adapter"))
        prompts = [[{"role": "user", "content": a["prompt"]}] for a in answers]
        settings = GenerationConfig(max_new_tokens=cfg.max_new_tokens, batch_size=len(prompts), seed=cfg.seed)
        assert any(a["trained"] != a["base"] for a in answers), f"{method}: the adapter changed no answer"
        assert generate(lm, prompts, settings) == [a["trained"] for a in answers], f"{method}: not its own adapter"
        with lm.model.disable_adapter():
            assert generate(lm, prompts, settings) == [a["base"] for a in answers], f"{method}: not the base model"
    dpo, orpo = (runs[m][2] for m in align.METHODS)
    assert [a["trained"] for a in dpo] != [a["trained"] for a in orpo], "two different adapters, two sets of answers"
    assert [a["base"] for a in dpo] == [a["base"] for a in orpo], "one base model"


class StopAfterFirstStep(RunRecorder):
    """Leaves the app's STOP request once step 1 is logged, as the Stop button would."""

    def log(self, step, max_steps, values):
        super().log(step, max_steps, values)
        if step >= 1:
            (self.run_dir / runfolder.STOP).write_text("stop")


def test_stop_and_save_leaves_an_adapter_that_loads_and_generates(tiny_lm_dir, pairs_file):
    run_dir = new_run_dir("align")
    cfg = tiny_config(tiny_lm_dir, pairs_file, max_steps=4, eval_prompts=0, free_prompt="How do I make soup?")
    figures = align.train(cfg, StopAfterFirstStep(run_dir))
    assert figures["status"] == "stopped" and figures["steps_done"] == 2 < figures["max_steps"] == 4
    assert (run_dir / "checkpoints" / "checkpoint-2").is_dir(), "Stop saves a checkpoint to resume from"
    assert json.loads((run_dir / "answers.json").read_text())[0]["prompt"] == "How do I make soup?"
    lm = load_language_model(str(run_dir / "adapter"))  # as the ICL lab loads a saved adapter
    assert type(lm.model).__name__.startswith("PeftModel") and lm.tokenizer.padding_side == "left"
    assert len(generate(lm, ["Tom has 3 apples."], GenerationConfig(max_new_tokens=3))) == 1


def _spawn_job(run_dir, cfg):
    argv = [sys.executable, "-m", "core", "align", "--run-dir", str(run_dir), *flags.config_argv(cfg)]
    with open(run_dir / "log.txt", "ab") as log:
        process = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True)
    (run_dir / "pid").write_text(str(process.pid))  # as core.jobs.JobManager does
    return process


def _wait_for_checkpoint(run_dir, process, timeout_s=120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        if any(e["event"] == "checkpoint" for e in runfolder.read_lines(run_dir / "events.jsonl")):
            return
        time.sleep(0.02)
    process.kill()
    raise AssertionError("no checkpoint before the job ended: " + (run_dir / "log.txt").read_text()[-2000:])


def test_a_killed_job_is_interrupted_at_its_checkpoint_and_resume_finishes_it(tiny_lm_dir, pairs_file):
    run_dir = new_run_dir("align")
    cfg = tiny_config(tiny_lm_dir, pairs_file, effective_batch=1, micro_batch=1, max_steps=6, save_steps=1,
                      eval_prompts=0)
    process = _spawn_job(run_dir, cfg)
    _wait_for_checkpoint(run_dir, process)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    info = runfolder.read_run(run_dir)
    assert info.status == "interrupted" and info.resumable, info.label()
    assert (run_dir / "checkpoints" / f"checkpoint-{info.checkpoint_step}").is_dir()
    logged_before = len(runfolder.read_lines(run_dir / "metrics.jsonl"))
    core_main.main(["align", "--run-dir", str(run_dir), "--resume"])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["status"], summary["steps_done"]) == ("finished", 6), summary
    resumed = [r["step"] for r in runfolder.read_lines(run_dir / "metrics.jsonl")[logged_before:] if "loss" in r]
    assert resumed == list(range(info.checkpoint_step + 1, 7))
    assert runfolder.read_run(run_dir).status == "finished"


def test_cli_both_trains_dpo_then_orpo_in_two_run_folders_and_compares_them(tiny_lm_dir, pairs_file, capsys):
    cfg = tiny_config(tiny_lm_dir, pairs_file, max_steps=1, eval_prompts=0)
    core_main.main(["align", "--method", "both", *flags.config_argv(cfg, skip=("method",))])
    table = capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith(("| dpo |", "| orpo |"))]
    assert [r.split(" | ")[1] for r in rows] == ["finished", "finished"], table
    folders = [runfolder.read_run(r.split(" | ")[-1].rstrip(" |")) for r in rows]
    assert [f.config["method"] for f in folders] == ["dpo", "orpo"] and folders[0].folder != folders[1].folder
    result = json.loads((folders[1].folder / "result.json").read_text())
    assert [run["method"] for run in result["runs"]] == ["dpo", "orpo"]


def test_cli_data_only_summarises_the_pairs_without_training(tiny_lm_dir, pairs_file, capsys):
    core_main.main(["align", "--data-only", "--model-id", str(tiny_lm_dir), "--dataset", str(pairs_file),
                    "--pairs", "5"])
    out = capsys.readouterr().out
    assert "12 pairs in" in out and "12 kept; 5 selected" in out, out
    assert not list(runs_dir().glob("align/*/config.json")), "no training job ran"


def test_zero_pairs_after_filtering_is_refused(tiny_lm_dir, tmp_path):
    same = write_pairs(tmp_path / "same.jsonl", [pair(i, "Same answer.", "Same answer.") for i in range(4)])
    with pytest.raises(ValueError, match="filtered out .*raise the similarity threshold"):
        align.train(tiny_config(tiny_lm_dir, same), RunRecorder(tmp_path / "run"))


def test_prompts_longer_than_max_length_are_refused(tiny_lm_dir, pairs_file, tmp_path):
    with pytest.raises(ValueError, match="every prompt is too long for max length 32"):
        align.train(tiny_config(tiny_lm_dir, pairs_file, max_length=32), RunRecorder(tmp_path / "run"))


def _checkpoint(run_dir, state, adapter):
    folder = run_dir / "checkpoints" / "checkpoint-1"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(state)
    (folder / "adapter_config.json").write_text(adapter)
    RunRecorder(run_dir).event("checkpoint", step=1, path=str(folder))


RESUMES = [  # (trainer_state.json, adapter_config.json, message, why)
    (None, None, "has no checkpoint to resume from", "nothing saved yet"),
    ("{not json", "{}", "is unreadable", "a checkpoint cut short by a crash"),
    ('{"global_step": 1}', '{"base_model_name_or_path": "someone/other-model"}', "was made for base model "
     "'someone/other-model'", "another base model"),
]


@pytest.mark.parametrize("state, adapter, message, why", RESUMES, ids=[r[3] for r in RESUMES])
def test_resuming_a_folder_that_cannot_be_resumed_is_refused(tiny_lm_dir, pairs_file, tmp_path, state, adapter,
                                                             message, why):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    if state is not None:
        _checkpoint(run_dir, state, adapter)
    with pytest.raises(ValueError, match=message):
        align.train(tiny_config(tiny_lm_dir, pairs_file), RunRecorder(run_dir), resume=True)


def test_resume_without_a_readable_config_is_refused(tmp_path):
    with pytest.raises(ValueError, match="config.json is unreadable"):
        core_main.main(["align", "--run-dir", str(tmp_path), "--resume"])
