"""The pure parts of the DPO / ORPO trainer: config checks, presets and CLI flags, the micro-batch estimator under a
memory cap and against measured peaks, the CPU thread count, and the CPU stand-in for trl's fused LM head."""
import pytest
import torch

from core import align, profiles
from core import __main__ as core_main
from core.align import AlignConfig
from core.align import cli as align_cli
from core.align.plan import AUTO_PEAK, GIB, ModelShape, choose_micro_batch, lora_parameters, training_bytes
from core.training import cpu_threads
from core.training import TorchChunkedLogProb

LLAMA_3B = ModelShape(layers=28, hidden=3072, intermediate=8192, kv_hidden=1024, vocab=128256)
LORA_3B = lora_parameters(LLAMA_3B, 64, align.TARGET_MODULES)
SMOLLM2 = ModelShape(layers=30, hidden=576, intermediate=1536, kv_hidden=192, vocab=49152)  # the lite generator


def _estimate(method, seq_len=1024, unsloth=True, shape=LLAMA_3B):
    lora = lora_parameters(shape, 64, align.TARGET_MODULES)

    def estimate(micro_batch, recompute=True):
        checkpoints = ("offloaded" if unsloth else "kept") if recompute else "none"
        return training_bytes(shape, micro_batch, seq_len, method, lora, checkpoints=checkpoints)
    return estimate


@pytest.mark.parametrize("checkpointing", ["auto", "on", "off"])
@pytest.mark.parametrize("method", align.METHODS)
@pytest.mark.parametrize("free_gib", [200, 40, 22, 20, 12, 8, 6, 4])
def test_the_chosen_plan_never_exceeds_the_free_memory(method, free_gib, checkpointing):
    estimate = _estimate(method)
    free = free_gib * GIB
    tried = align.plan.options(8, checkpointing)
    if all(estimate(*option) > free for option in tried):
        with pytest.raises(ValueError, match="lower max length"):
            choose_micro_batch(8, free, estimate, checkpointing)
        return
    plan = choose_micro_batch(8, free, estimate, checkpointing)
    assert estimate(plan.micro_batch, plan.checkpointing) <= free and plan.micro_batch * plan.grad_accum == 8
    if checkpointing == "auto" and not plan.checkpointing:
        assert estimate(plan.micro_batch, False) <= AUTO_PEAK
    earlier = tried[:tried.index((plan.micro_batch, plan.checkpointing))]
    room = {True: free, False: free if checkpointing != "auto" else min(free, AUTO_PEAK)}
    assert all(estimate(*option) > room[option[1]] for option in earlier), "a faster plan would have fit"
    if checkpointing != "auto":
        assert plan.checkpointing is (checkpointing == "on")


def test_auto_checkpointing_drops_recomputation_only_within_a_24gb_cards_peak():
    """"auto" leaves checkpointing off only where the whole peak stays within 20 GiB: the lite generator on any
    GPU, never the 3B ORPO (28.9 GB measured without it), whose default is then the same plan on an H200 as on a
    24 GB card; "off" lifts the limit."""
    small = _estimate("orpo", seq_len=500, shape=SMOLLM2)
    roomy_small = choose_micro_batch(8, 130 * GIB, small, "auto", held_bytes=GIB)
    assert (roomy_small.micro_batch, roomy_small.checkpointing) == (8, False), roomy_small.reason
    assert "without gradient checkpointing" in roomy_small.reason
    crowded = choose_micro_batch(8, 130 * GIB, small, "auto", held_bytes=AUTO_PEAK - small(8, False) + 1)
    assert (crowded.micro_batch, crowded.checkpointing) == (8, True), "the held bytes count in the peak"

    estimate = _estimate("orpo", seq_len=500)
    assert estimate(8, False) + 2.4 * GIB > AUTO_PEAK  # the case the limit is for
    roomy = choose_micro_batch(8, 130 * GIB, estimate, "auto", held_bytes=int(2.4 * GIB))
    assert (roomy.micro_batch, roomy.checkpointing) == (8, True), roomy.reason
    assert "over the 20 GiB peak a plan without checkpointing keeps to" in roomy.reason
    assert choose_micro_batch(8, 130 * GIB, estimate, "off").checkpointing is False
    card = choose_micro_batch(8, 20 * GIB, estimate, "auto")  # a 24 GB card (22.5 GiB) with the 4-bit 3B loaded
    assert (card.micro_batch, card.checkpointing) == (8, True), card.reason
    assert "micro-batch 8 without checkpointing would need" in card.reason
    tight = choose_micro_batch(8, 12 * GIB, estimate, "auto")
    assert (tight.micro_batch, tight.checkpointing) == (4, True) and "with gradient checkpointing" in tight.reason
    assert "more than is free" in tight.reason
    assert align.plan.options(8, "auto") == [(8, False), (8, True), (4, True), (2, True), (1, True)]
    assert align.plan.options(2, "auto") == [(2, False), (2, True), (1, True)]
    with pytest.raises(ValueError, match="gradient checkpointing must be one of"):
        align.plan.options(8, "sometimes")


ESTIMATES = [  # (method, checkpoints, micro-batch, measured peak GiB allocated on an H200, why)
    ("dpo", "offloaded", 8, 4.38, "unsloth, micro-batch 8 (H100, 2026-11-22)"),
    ("orpo", "offloaded", 8, 13.0, "unsloth ORPO materialises the logits (bench/RESULTS.md)"),
    ("orpo", "none", 8, 28.86, "unsloth ORPO without checkpointing, micro-batch 8 (H200, 2026-12-01)"),
    ("orpo", "none", 4, 16.20, "unsloth ORPO without checkpointing, micro-batch 4 x 2"),
    ("dpo", "none", 8, 19.92, "unsloth DPO without checkpointing, micro-batch 8 (H200, 2026-12-01 19:3x UTC)"),
    ("dpo", "kept", 2, 5.00, "plain transformers + bnb + peft, the notebook's 2 x 4"),
    ("orpo", "kept", 2, 7.64, "plain ORPO, 2 x 4"),
]


@pytest.mark.parametrize("method, checkpoints, micro_batch, measured_gb, why", ESTIMATES,
                         ids=[e[4] for e in ESTIMATES])
def test_the_estimate_covers_the_measured_peaks(method, checkpoints, micro_batch, measured_gb, why):
    weights_gib = 2.4  # 4-bit 3B (bf16 embeddings) + the r 64 adapter: what the estimate leaves to the measured load
    estimated = training_bytes(LLAMA_3B, micro_batch, 500, method, LORA_3B, checkpoints=checkpoints) / GIB
    assert estimated + weights_gib >= measured_gb, why
    assert estimated + weights_gib <= 2 * measured_gb, f"{why}: so cautious it would waste the GPU"


def test_the_memory_cap_is_read_from_the_environment_and_checked(monkeypatch):
    from core.memory import apply_memory_cap, free_accelerator_bytes, memory_cap_bytes

    monkeypatch.delenv("ALAB_GPU_MEMORY_GIB", raising=False)
    assert memory_cap_bytes() is None
    monkeypatch.setenv("ALAB_GPU_MEMORY_GIB", "22")
    assert memory_cap_bytes() == 22 * GIB
    if not torch.cuda.is_available():
        assert apply_memory_cap() == {} and free_accelerator_bytes() is None
    for bad in ("0", "-3", "lots", "nan"):
        monkeypatch.setenv("ALAB_GPU_MEMORY_GIB", bad)
        with pytest.raises(ValueError, match="ALAB_GPU_MEMORY_GIB must be a positive number"):
            memory_cap_bytes()


@pytest.mark.parametrize("cores, load, threads, why", [
    (2, 0.3, 2, "an idle laptop: both cores"),
    (2, 1.2, 1, "one core busy elsewhere"),
    (2, 5.0, 1, "an oversubscribed machine still gets one thread"),
    (16, 3.9, 13, "a big machine shares what is idle"),
])
def test_a_cpu_job_takes_the_idle_cores(cores, load, threads, why):
    assert cpu_threads(cores, load) == threads, why


def test_set_cpu_threads_sets_torch_from_the_load_unless_omp_says(monkeypatch):
    from core.training import set_cpu_threads

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    monkeypatch.setattr("os.getloadavg", lambda: (2.5, 0.0, 0.0))
    set_to = []
    monkeypatch.setattr(torch, "set_num_threads", set_to.append)
    assert set_cpu_threads("cuda") == {} and set_to == [], "an accelerator job leaves the CPU threads alone"
    assert set_cpu_threads("cpu")["cpu_threads_reason"] == "load average 2.5 on 4 cores when training began"
    assert set_to == [2], "two of four cores are busy elsewhere"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert set_cpu_threads("cpu") == {"cpu_threads": 4, "cpu_threads_reason": "OMP_NUM_THREADS"} and set_to == [2]
    monkeypatch.undo()
    assert torch.get_num_threads() == before


BAD_CONFIGS = [  # (overrides, message fragment, why)
    ({"learning_rate": 0.0}, "learning rate must be > 0", "no step at all"),
    ({"learning_rate": -1e-5}, "learning rate must be > 0", "a negative step"),
    ({"effective_batch": 0}, "effective batch must be > 0", "batch 0"),
    ({"micro_batch": 3}, "divide the effective batch", "8 pairs cannot split into 3s"),
    ({"method": "ppo"}, "unknown method 'ppo': choose one of dpo, orpo", "unknown method"),
    ({"precision": "8bit"}, "unknown precision", "unknown precision"),
    ({"max_steps": 0}, "max steps must be -1", "zero steps"),
    ({"warmup_ratio": 1.0}, "warmup ratio", "all warmup"),
    ({"pairs": 0}, "rows must be >= 1", "no pairs asked for"),
    ({"free_prompt": "x" * 200_000}, "at most 2000 characters", "longer than a command-line argument can be"),
    ({"free_prompt": "a\0b"}, "without NUL bytes", "a NUL ends a command-line argument"),
]


@pytest.mark.parametrize("overrides, message, why", BAD_CONFIGS, ids=[b[2] for b in BAD_CONFIGS])
def test_bad_settings_are_refused_with_what_to_do(overrides, message, why):
    with pytest.raises(ValueError, match=message):
        AlignConfig(**overrides)


def test_presets_size_the_quick_demo_for_a_laptop_and_flags_win():
    quick = align.preset_config("quick", profiles.LITE)
    assert (quick.model_id, quick.lora_r, quick.max_length, quick.pairs) == (profiles.SMOLLM2, 16, 512, 24)
    # the notebook preset is the defaults plus the notebook's run settings (tests/test_course_notebook.py checks them)
    from core.align.config import NOTEBOOK

    assert align.preset_config("notebook", profiles.FULL) == AlignConfig(**NOTEBOOK)
    with pytest.raises(ValueError, match="choose one of quick, notebook"):
        align.preset_config("fast", profiles.LITE)
    flags = ["align", "--preset", "quick", "--lora-r", "8", "--no-drop-toxic"]
    args = core_main.build_parser("align").parse_args(flags)
    cfg = align_cli.build_config(args, profiles.LITE, "orpo")
    assert (cfg.method, cfg.lora_r, cfg.drop_toxic, cfg.max_length) == ("orpo", 8, False, 512)


def _naive(hidden, weight, bias, targets, temperature, softcap, scale):
    z = (hidden @ weight.t() + (0 if bias is None else bias)) * scale
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    log_probs = torch.log_softmax(z / temperature, dim=-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    return log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1), entropy


@pytest.mark.parametrize("bias, temperature, softcap, scale", [
    (False, 1.0, None, 1.0), (True, 0.7, None, 1.0), (False, 1.0, 30.0, 0.5)],
    ids=["plain", "bias and temperature", "softcap and logit scale"])
def test_the_cpu_lm_head_matches_log_softmax_and_entropy_with_gradients(bias, temperature, softcap, scale):
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(7, 16, generator=gen, dtype=torch.float32, requires_grad=True)
    weight = torch.randn(50, 16, generator=gen, dtype=torch.float32, requires_grad=True)
    b = torch.randn(50, generator=gen, dtype=torch.float32) if bias else None
    targets = torch.randint(0, 50, (7,), generator=gen)
    log_probs, entropy, *_ = TorchChunkedLogProb.apply(hidden, weight, b, targets, temperature, 4, softcap, scale,
                                                       ("log_probs", "entropy"))
    want_lp, want_entropy = _naive(hidden, weight, b, targets, temperature, softcap, scale)
    torch.testing.assert_close(log_probs, want_lp)
    torch.testing.assert_close(entropy, want_entropy)
    got = torch.autograd.grad((log_probs.sum() + entropy.sum()), (hidden, weight))
    want = torch.autograd.grad((want_lp.sum() + want_entropy.sum()), (hidden, weight))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_a_half_written_last_checkpoint_is_skipped_for_the_whole_one_before(tmp_path):
    """A job cancelled while the Trainer saved (it writes in place) leaves a folder without its trainer state, and
    without the "checkpoint" event the Trainer's on_save records once the folder is written."""
    import json

    from core.runfolder import RunRecorder, last_checkpoint

    recorder = RunRecorder(tmp_path)
    whole, half = tmp_path / "checkpoints" / "checkpoint-2", tmp_path / "checkpoints" / "checkpoint-3"
    for folder in (whole, half):
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "m"}))
    (whole / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    recorder.event("checkpoint", step=2, path=str(whole))
    assert last_checkpoint(tmp_path) == whole
    (half / "trainer_state.json").write_text(json.dumps({"global_step": 3}))
    recorder.event("checkpoint", step=3, path=str(half))
    assert last_checkpoint(tmp_path) == half


@pytest.mark.parametrize("backend, checkpointing, micro_batch, free_gib, expected", [
    ("unsloth", "auto", 0, 130, (8, True)),  # without checkpointing: over AUTO_PEAK
    ("unsloth", "auto", 0, 20, (8, True)),
    ("unsloth", "on", 0, 130, (8, True)),
    ("unsloth", "off", 0, 20, (4, False)),
    ("unsloth", "auto", 2, 130, (2, False)),
    ("unsloth", "auto", 2, 4, (2, True)),
    ("transformers+peft", "auto", 0, 130, (8, True)),  # plain transformers keeps the notebook's checkpointing
    ("transformers+peft", "off", 2, 130, (2, False)),
    ("transformers+peft-cpu", "auto", 0, 0, (2, False)),  # a CPU: a short micro-batch, never checkpointing
])
def test_the_job_plans_micro_batch_and_checkpointing_from_the_free_memory(monkeypatch, tmp_path, backend,
                                                                           checkpointing, micro_batch, free_gib,
                                                                           expected):
    """core.align.job.plan_batches on a CUDA policy of the Llama-3.2-3B shape, the free memory given; and the
    plain path's Trainer gets the same checkpointing choice."""
    from core.align import job as align_job
    from core.align.model import Policy

    monkeypatch.setattr(align_job, "free_accelerator_bytes", lambda: free_gib * GIB)
    monkeypatch.setattr(align_job, "held_accelerator_bytes", lambda: int(2.4 * GIB))  # the 4-bit 3B loaded
    device = "cpu" if backend.endswith("-cpu") else "cuda"
    policy = Policy(None, None, backend.removesuffix("-cpu"), "4-bit NF4", None, LLAMA_3B, device)
    cfg = AlignConfig(method="orpo", gradient_checkpointing=checkpointing, micro_batch=micro_batch)
    plan = align_job.plan_batches(cfg, policy, 500)
    assert (plan.micro_batch, plan.checkpointing) == expected, plan.reason
    assert plan.micro_batch * plan.grad_accum == 8
    if backend != "unsloth":
        args = align_job.trainer_args(cfg, tmp_path, policy, plan, 1, "adamw_8bit")
        assert args["gradient_checkpointing"] is plan.checkpointing


@pytest.mark.parametrize("checkpointing, expected", [("auto", True), ("on", True), ("off", False)])
def test_processes_agreeing_on_a_smaller_micro_batch_keep_the_checkpointing_choice(monkeypatch, checkpointing,
                                                                                   expected):
    """Under accelerate every process takes the smallest micro-batch any of them planned; "off" stays off there."""
    from core.align import job as align_job
    from core.align.model import Policy

    monkeypatch.setattr(align_job, "free_accelerator_bytes", lambda: 130 * GIB)
    monkeypatch.setattr(align_job, "held_accelerator_bytes", lambda: int(2.4 * GIB))
    monkeypatch.setattr(align_job, "smallest_across_processes", lambda value: 2)  # another process had less room
    policy = Policy(None, None, "unsloth", "4-bit NF4", None, LLAMA_3B, "cuda")
    plan = align_job.plan_batches(AlignConfig(method="orpo", gradient_checkpointing=checkpointing), policy, 500)
    assert (plan.micro_batch, plan.grad_accum, plan.checkpointing) == (2, 4, expected), plan.reason
    assert "what the process with the least free memory can take" in plan.reason


def test_an_unknown_checkpointing_choice_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="unknown gradient_checkpointing 'sometimes': choose one of auto, on, off"):
        AlignConfig(gradient_checkpointing="sometimes")
