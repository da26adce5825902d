"""The align and rl command lines under `accelerate launch` with two CPU processes (gloo) on the tiny model: both
ranks train (each writes ranks/rank-<r>.json), their trainable weights end equal and moved although each rank trained
on other rows (so gradients were averaged), and rank 0 alone writes the one run folder (one "started" event, one
metrics line per step).
The launch uses --multi_gpu: `accelerate launch --cpu --num_processes 2` starts a single process without mpirun."""
import json
import os
import signal
import socket
import string
import subprocess
import sys
from pathlib import Path

import pytest

from core import processes
from core.align.plan import cpu_plan, share_per_process, steps_per_run
from core.runfolder import read_lines
from core.runs import REPO_ROOT, runs_dir
from testing.tiny import CORPUS
from tests.align_tiny import pair, write_pairs

LAUNCH_TIMEOUT_S = 300  # one launch takes ~40-60 s on 2 shared cores (two processes import torch, trl and peft)
WORDS = sorted({w for line in CORPUS[:7] for w in line.replace(".", " ").replace(",", " ").split()})
# ROUGE of a random tiny model's 8 tokens against the corpus words and every letter and digit: > 0 for ~40% of
# completions (against one corpus sentence: 0 for all 16 tried), so RL steps have rewards to learn from
HIGHLIGHTS = " ".join(WORDS + list(string.ascii_lowercase + string.digits))


STEPS = [  # (pairs, effective batch, processes, optimizer steps, why)
    (8, 4, 1, 2, "one process: 4 micro-batches of 2, two per step"),
    (8, 4, 2, 2, "two processes take alternate micro-batches of 2, one each per step: as many steps"),
    (9, 4, 2, 3, "a last partial micro-batch still makes a step, as on one process"),
    (16, 8, 4, 2, "four processes, 2 pairs each per step"),
]


@pytest.mark.parametrize("pairs, effective, processes, steps, why", STEPS, ids=[s[-1] for s in STEPS])
def test_a_run_takes_as_many_steps_of_as_many_pairs_on_several_processes(pairs, effective, processes, steps, why):
    plan = cpu_plan(share_per_process(effective, processes))
    assert plan.micro_batch * plan.grad_accum * processes == effective
    assert steps_per_run(pairs, plan, 1, processes) == steps == steps_per_run(pairs, cpu_plan(effective), 1)


def test_an_effective_batch_that_does_not_split_over_the_processes_is_refused():
    with pytest.raises(ValueError, match="effective batch 6 does not split evenly over 4 processes: choose a multiple"):
        share_per_process(6, 4)


CPU_LAUNCH = {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1"}  # what `accelerate launch --cpu` leaves
LAUNCHES = [  # (environment, world size, warned, why)
    (CPU_LAUNCH, 1, True, "--cpu --num_processes 2 without mpirun: one process, silently"),
    ({**CPU_LAUNCH, "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1"}, 2, False, "mpirun ran two"),
    ({"ACCELERATE_USE_CPU": "True"}, 1, False, "--cpu with one process asked for"),
    ({"MASTER_ADDR": "127.0.0.1", "WORLD_SIZE": "2", "RANK": "1"}, 2, False, "--multi_gpu: torchrun's two"),
]


@pytest.mark.parametrize("environment, size, warned, why", LAUNCHES, ids=[launch[-1] for launch in LAUNCHES])
def test_a_cpu_launch_that_started_one_process_is_named(environment, size, warned, why, monkeypatch):
    for name in ("ACCELERATE_USE_CPU", "MASTER_ADDR", *processes.RANK_VARS, *processes.WORLD_SIZE_VARS):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert (processes.world_size(), processes.rank(), processes.launch_warning() is not None) == \
        (size, size - 1, warned)


def accelerate_launch() -> list[str]:
    """The `accelerate launch` next to this python, or its module when the script is missing."""
    script = Path(sys.executable).with_name("accelerate")
    return [str(script), "launch"] if script.exists() else [sys.executable, "-m", "accelerate.commands.launch"]


def free_port() -> int:
    with socket.socket() as s:  # the machine is shared: never the default 29500
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(job: str, flags: list[str], tmp_path: Path) -> str:
    """`accelerate launch --multi_gpu --num_processes 2 -m core <job> <flags>`; its output, after checking it ended
    well in time (on a timeout the whole process group is killed)."""
    argv = [*accelerate_launch(), "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
            "-m", "core", job, *flags]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "ALAB_RUNS": str(runs_dir()), "HF_HOME": str(tmp_path / "hf")}  # HF_HOME: no accelerate config of a user's
    process = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=LAUNCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"accelerate launch {job} ran past {LAUNCH_TIMEOUT_S} s:\n{output[-3000:]}")
    assert process.returncode == 0, output[-3000:]
    return output


def the_one_run(kind: str) -> Path:
    folders = [f for f in (runs_dir() / kind).iterdir() if f.is_dir()]
    assert len(folders) == 1, f"the processes must share one run folder, got {[f.name for f in folders]}"
    return folders[0]


def check_two_ranks_one_writer(run_dir: Path, steps: int, step_key: str) -> list[dict]:
    """The rank records prove two processes trained in step; the records rank 0 alone writes appear once."""
    ranks = [json.loads((run_dir / "ranks" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [(r["rank"], r["world_size"], r["steps_done"]) for r in ranks] == [(0, 2, steps), (1, 2, steps)]
    assert ranks[0]["trainable_tensors"] == ranks[1]["trainable_tensors"] > 0
    assert ranks[0]["trainable_sha256_start"] == ranks[1]["trainable_sha256_start"], "both started from one init"
    assert ranks[0]["trainable_sha256"] == ranks[1]["trainable_sha256"], "gradients were not averaged"
    assert ranks[0]["trainable_sha256"] != ranks[0]["trainable_sha256_start"], "training did not move the weights"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["status"], summary["steps_done"]) == ("finished", steps), summary
    assert json.loads((run_dir / "config.json").read_text())
    assert [m["step"] for m in read_lines(run_dir / "metrics.jsonl") if step_key in m] == list(range(1, steps + 1))
    events = [e["event"] for e in read_lines(run_dir / "events.jsonl")]
    assert events.count("started") == 1 and events[-1] == "finished", events
    assert json.loads((run_dir / "result.json").read_text())["runs"][0]["status"] == "finished"
    return ranks


def test_align_dpo_trains_on_two_processes_into_one_run_folder(tiny_lm_dir, tmp_path):
    pairs = write_pairs(tmp_path / "pairs.jsonl", [pair(i) for i in range(12)])
    output = launch("align", ["--profile", "lite", "--model-id", str(tiny_lm_dir), "--dataset", str(pairs),
                              "--pairs", "8", "--effective-batch", "4", "--micro-batch", "2", "--max-steps", "2",
                              "--lora-r", "4", "--lora-alpha", "8", "--learning-rate", "1e-3", "--warmup-ratio", "0",
                              "--max-length", "192", "--eval-prompts", "1", "--max-new-tokens", "4"], tmp_path)
    run_dir = the_one_run("align")  # no --run-dir: rank 0 named the folder for both
    check_two_ranks_one_writer(run_dir, steps=2, step_key="loss")
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["processes"], config["micro_batch"], config["grad_accum"]) == (2, 2, 1), \
        "each process takes half of the 4 pairs a step trains on"
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file(), "two writers once removed each other's"
    assert json.loads((run_dir / "answers.json").read_text())
    assert output.count("| dpo | finished |") == 1, "rank 0 alone prints the table"


def write_news(path: Path) -> Path:
    path.write_text("".join(json.dumps({"article": CORPUS[i % 7] + f" Story {i}.", "highlights": HIGHLIGHTS,
                                        "id": f"a{i}"}) + "\n" for i in range(8)))
    return path


def rl_flags(tiny_lm_dir, tmp_path) -> list[str]:
    return ["--profile", "lite", "--summarizer", str(tiny_lm_dir), "--news", str(write_news(tmp_path / "news.jsonl")),
            "--n-articles", "8", "--max-prompt-tokens", "16", "--max-new-tokens", "8", "--learning-rate", "0.01",
            "--eval-articles", "1", "--max-steps", "2"]


def test_rl_ppo_trains_on_two_processes_into_one_run_folder(tiny_lm_dir, tmp_path):
    # 2 articles per process and step; the missing-EOS penalty gives every step a gradient even where ROUGE is 0
    launch("rl", [*rl_flags(tiny_lm_dir, tmp_path), "--algo", "ppo", "--batch-size", "2", "--mini-batch-size", "2",
                  "--missing-eos-penalty", "1"], tmp_path)
    run_dir = the_one_run("rl")
    check_two_ranks_one_writer(run_dir, steps=2, step_key="reward")
    assert len(json.loads((run_dir / "before_after.json").read_text())["articles"]) == 1
    assert [s["step"] for s in read_lines(run_dir / "samples.jsonl")] == [1, 1, 2, 2], "2 samples a step, rank 0's"
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()


def test_rl_grpo_trains_on_two_processes_into_one_run_folder(tiny_lm_dir, tmp_path):
    # 4 completions (one article) per process and step
    launch("rl", [*rl_flags(tiny_lm_dir, tmp_path), "--algo", "grpo", "--batch-size", "4", "--num-generations", "4"],
           tmp_path)
    run_dir = the_one_run("rl")
    check_two_ranks_one_writer(run_dir, steps=2, step_key="loss")
    assert [s["step"] for s in read_lines(run_dir / "samples.jsonl")] == [1, 1, 2, 2], "2 samples a step, rank 0's"
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
