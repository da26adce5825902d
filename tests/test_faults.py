"""Faults a Space meets (issue 12): a model that does not fit the memory left (a real address-space cap on a child
process), and the disk filling up while a training run writes its checkpoints. Killing the app or the job mid-run
is in test_jobs.py and test_align_train.py; corrupt RAG indexes, answer caches and run folders in test_rag.py,
test_runs.py and test_jobs.py."""
import errno
import json
import subprocess
import sys
import textwrap

import pytest
import torch

from core import align, runfolder
from core import __main__ as core_main
from core.align.model import read_checkpoint
from core.runfolder import last_checkpoint
from core.runs import REPO_ROOT, new_run_dir
from tests.align_tiny import pair, tiny_config, write_pairs

CAPPED_LOAD = textwrap.dedent("""
    import json, resource, sys
    from pathlib import Path
    from core import loaders
    from core.models import MODELS, ModelLoadError
    from testing.tiny import save_tiny_lm

    big, small = Path(sys.argv[1]), Path(sys.argv[2])
    import psutil, torch, transformers  # everything the load and the status need is imported before the cap
    torch.set_num_threads(1)
    with open("/proc/self/status") as f:
        used = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (used + 64 * 2**20, hard))  # 64 MB more; the model needs ~400 MB
    out = {}
    try:
        with MODELS.use("generator", str(big), loaders.load_language_model):
            out["loaded"] = True
    except ModelLoadError as exc:
        out["error"] = str(exc)
    out["after_failure"] = MODELS.status()
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    with MODELS.use("generator", str(small), loaders.load_language_model) as lm:
        out["next_load"] = lm.model_id
    print("RESULT " + json.dumps(out))
""")


def test_a_model_that_does_not_fit_fails_clearly_and_leaves_the_slot_clean(tmp_path, tiny_lm_dir):
    from transformers import LlamaConfig, LlamaForCausalLM

    from testing.tiny import tiny_tokenizer

    big = tmp_path / "too-big"  # ~100M parameters: ~400 MB in float32
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=32000, hidden_size=768, intermediate_size=2048,
                                         num_hidden_layers=8, num_attention_heads=12, num_key_value_heads=4))
    model.save_pretrained(big)
    tiny_tokenizer().save_pretrained(big)
    del model
    done = subprocess.run([sys.executable, "-c", CAPPED_LOAD, str(big), str(tiny_lm_dir)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stdout[-2000:] + done.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert "loaded" not in out, "the cap was too loose: the model fitted"
    assert "out of memory" in out["error"] and "too-big" in out["error"], out["error"]
    assert out["after_failure"]["model_id"] is None and not out["after_failure"]["loading"], out["after_failure"]
    assert out["next_load"] == str(tiny_lm_dir), "the slot loads the next model as usual"


def test_the_disk_filling_up_mid_checkpoint_leaves_the_last_one_whole_and_the_run_resumable(
        tiny_lm_dir, monkeypatch, tmp_path):
    """Fault injection at the file system's edge: the Trainer's torch.save into checkpoint-2 writes part of its file,
    then the disk is full (ENOSPC), as a Space's persistent storage would answer."""
    pairs = write_pairs(tmp_path / "pairs.jsonl", [pair(i) for i in range(12)])
    cfg = tiny_config(tiny_lm_dir, pairs, effective_batch=1, micro_batch=1, max_steps=3, save_steps=1,
                      eval_prompts=0)
    real_save = torch.save

    def filling_disk(obj, f, *args, **kwargs):
        if "checkpoint-2" in str(f):
            with open(f, "wb") as half:
                half.write(b"\x80\x02partial")
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", filling_disk)
    run_dir = new_run_dir("align")
    summary = runfolder.run_job(run_dir, lambda recorder: align.train(cfg, recorder))
    assert summary["status"] == "failed" and summary["reason"].startswith(runfolder.DISK_FULL), summary
    assert "free space" in summary["reason"] and "resume" in summary["reason"]

    info = runfolder.read_run(run_dir)
    assert (info.status, info.checkpoint_step, info.resumable) == ("failed", 1, True), info.to_dict()
    half_written = run_dir / "checkpoints" / "checkpoint-2"
    assert half_written.is_dir(), "the fault struck inside the second checkpoint"
    with pytest.raises(ValueError, match="unreadable"):
        read_checkpoint(half_written)
    assert last_checkpoint(run_dir).name == "checkpoint-1"
    assert read_checkpoint(run_dir / "checkpoints" / "checkpoint-1")["r"] == cfg.lora_r

    monkeypatch.setattr(torch, "save", real_save)  # space freed: resume continues from the whole checkpoint
    logged = len(runfolder.read_lines(run_dir / "metrics.jsonl"))
    core_main.main(["align", "--run-dir", str(run_dir), "--resume"])
    resumed = json.loads((run_dir / "summary.json").read_text())
    assert (resumed["status"], resumed["steps_done"]) == ("finished", 3), resumed
    steps = [r["step"] for r in runfolder.read_lines(run_dir / "metrics.jsonl")[logged:] if "loss" in r]
    assert steps == [2, 3], "training went on from step 1's checkpoint"
