"""ICL benchmarks. GPU (default, CUDA): a random-weight Llama-3.2-3B-shape model loaded through core.loaders
(unsloth on CUDA), exactly 256 new tokens per prompt; the 50 questions x 6 single-stage strategies sweep in one
batched pass, and the notebook's way (one `generate` per prompt) on a slice, as a ratio. CPU: `--smoke` (tiny shapes),
`--lite` (SmolLM2, 10 questions x baseline and zero-shot CoT), `--accuracy DATA` (SmolLM2, every strategy).

    python -m bench icl [--batch-size 150] [--slice 6]     python -m bench icl --smoke
    python -m bench icl --lite                              python -m bench icl --accuracy ../shared/data/gsm8k
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

from bench.common import header, table, timed

ASSET = Path(__file__).resolve().parent.parent / "assets" / "gsm8k_sample.jsonl"
SWEEP = ("baseline", "role_play", "zero_shot_cot", "few_shot_cot", "least_to_most", "generated_knowledge")
LLAMA_3B = dict(vocab_size=128256, hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
                num_attention_heads=24, num_key_value_heads=8, tie_word_embeddings=True,
                max_position_embeddings=131072,
                rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                                 "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                 "original_max_position_embeddings": 8192})
SMOKE = dict(vocab_size=128256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, tie_word_embeddings=True, max_position_embeddings=4096)
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _sample_rows() -> list[dict]:
    return [json.loads(line) for line in ASSET.read_text().splitlines()]


def bpe_tokenizer(vocab: int = 1000):
    """A byte-level BPE trained on the GSM8K sample and our templates. No hub on the GPU machine; at 1000 merges
    its prompt lengths track SmolLM2's real tokenizer (median 99 vs 97 tokens, few-shot 895 vs 916). The model's
    vocabulary stays 128256 (the real embedding and LM-head cost); ids past this tokenizer decode to nothing."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from core.icl import STRATEGIES

    corpus = [r["question"] + "\n" + r["answer"] for r in _sample_rows()]
    corpus += [t for s in STRATEGIES.values() for stage in s.stages for _role, t in stage.turns]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|pad|>", "<|im_start|>",
                            "<|im_end|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>", eos_token="<|im_end|>",
                                   bos_token="<|im_start|>")
    fast.chat_template = CHATML
    return fast


def save_random_llama(folder: Path, shape: dict) -> Path:
    """Random weights in the given shape (bf16 on CUDA), saved with the BPE tokenizer as a local model folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cuda = torch.cuda.is_available()
    config = LlamaConfig(**shape, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                         dtype="bfloat16" if cuda else "float32")
    torch.manual_seed(0)
    with torch.device("cuda" if cuda else "cpu"):
        model = LlamaForCausalLM(config).to(torch.bfloat16 if cuda else torch.float32)
    model.save_pretrained(folder)
    bpe_tokenizer().save_pretrained(folder)
    del model
    if cuda:
        torch.cuda.empty_cache()
    return folder


def sweep_prompts(n: int) -> list[list[dict]]:
    """Stage-1 prompts of the six single-stage-equivalent strategies for n seeded questions of the lite sample."""
    from core import icl
    from core.icl import STRATEGIES, render

    rows = _sample_rows()  # read directly: the GPU machine may lack `datasets`
    cfg = icl.IclConfig(dataset=str(ASSET), n=n, strategies=SWEEP)
    problems = icl.select_problems(cfg, rows)
    shots = icl.pick_exemplars(cfg, {p.question for p in problems}, rows)
    return [render(STRATEGIES[name], 0, p.question, shots, []) for name in SWEEP for p in problems]


def _sweep_rows(args, lengths: list[int], sweeps: list[tuple[str, float, str]], single: list[float],
                backend: str) -> list[dict]:
    new = args.new_tokens
    per_prompt = statistics.mean(single)
    notebook_way = per_prompt * len(lengths)
    total = len(lengths) * new
    default = sweeps[0][1]
    rows = [{"measure": f"prompt tokens (min / median / max) of {len(lengths)} prompts",
             "value": f"{min(lengths)} / {statistics.median(lengths):.0f} / {max(lengths)}", "note": backend}]
    for how, seconds, peak in sweeps:
        rows += [{"measure": f"sweep: {args.questions} q x {len(SWEEP)} strategies, {new} new tokens each, {how}",
                  "value": f"{seconds:.1f} s", "note": f"{total / seconds:.0f} tok/s, {peak}"}]
    return rows + [
        {"measure": f"notebook's way: one generate per prompt, batch 1 (mean of {len(single)})",
         "value": f"{per_prompt:.2f} s/prompt", "note": f"{new / per_prompt:.1f} tok/s"},
        {"measure": f"notebook's way for all {len(lengths)} prompts (extrapolated)", "value": f"{notebook_way:.0f} s",
         "note": ""},
        {"measure": "speed-up of the app's default sweep over the course notebook's way",
         "value": f"{notebook_way / default:.1f}x", "note": "target >= 40x"},
    ]


def gpu_sweep(args) -> list[dict]:
    """The sweep in one batched pass, then the course notebook's way (batch 1, one generate per prompt) on a slice."""
    import importlib.util

    import torch

    if torch.cuda.is_available() and importlib.util.find_spec("unsloth"):
        import unsloth  # noqa: F401  (unsloth patches transformers at import: before save_random_llama imports it)
    from core.generation import GenerationConfig, GenerationReport, chat_text, generate
    from core.loaders import load_language_model
    from core.models import MODELS

    cuda, new = torch.cuda.is_available(), args.new_tokens
    fixed = dict(max_new_tokens=new, min_new_tokens=new)  # random weights must not stop early
    # "-bnb-4bit" in the name makes the loader quantize to 4-bit NF4 as the full profile's checkpoint is
    name = "llama-3.2-3b-shape" + ("" if args.bf16 else "-bnb-4bit")
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        folder = save_random_llama(Path(tmp) / name, SMOKE if args.smoke else LLAMA_3B)
        prompts = sweep_prompts(args.questions)
        with MODELS.use("generator", str(folder), load_language_model) as lm:
            lengths = [len(lm.tokenizer(chat_text(lm.tokenizer, p), add_special_tokens=False).input_ids)
                       for p in prompts]
            generate(lm, prompts[:2], GenerationConfig(max_new_tokens=4, batch_size=2))  # warm-up
            sweeps = []
            for batch in (0, args.batch_size):  # the app's default (auto), then the hand-set batch
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                report = GenerationReport()
                seconds, _ = timed(lambda b=batch: generate(lm, prompts, GenerationConfig(**fixed, batch_size=b),
                                                            report=report))
                peak = f"peak {torch.cuda.max_memory_allocated() / 2 ** 30:.1f} GB" if cuda else "CPU"
                how = "the app's default, " + report.text() if batch == 0 else f"hand-set batch {batch}"
                sweeps.append((how, seconds, peak))
            picked = prompts[::args.questions][:args.slice]  # one prompt per strategy
            single = [timed(lambda p=p: generate(lm, [p], GenerationConfig(**fixed, batch_size=1)))[0]
                      for p in picked]
            backend = lm.backend
    return _sweep_rows(args, lengths, sweeps, single, backend)


def lite_timing(args) -> list[dict]:
    """SmolLM2 on 10 seeded questions of the lite sample x (baseline, zero_shot_cot), fresh cache; then again."""
    from core import icl, profiles
    from core.icl import summarize
    from core.loaders import load_language_model
    from core.models import MODELS

    cfg = icl.IclConfig(model_id=profiles.LITE.generator, dataset=profiles.LITE.gsm8k, n=10,
                        strategies=("baseline", "zero_shot_cot"), max_new_tokens=args.max_new_tokens)
    with MODELS.use("generator", cfg.model_id, load_language_model):
        pass  # load time is not part of the figure
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ALAB_CACHE"] = tmp  # a fresh answer cache: the first run generates everything
        seconds, result = timed(lambda: icl.run(cfg))
        cached, _ = timed(lambda: icl.run(cfg))
    rows = [{"measure": f"10 questions x (baseline, zero_shot_cot): {result.generated} prompts, max "
                        f"{cfg.max_new_tokens} new tokens, batch {cfg.batch_size}", "value": f"{seconds:.1f} s"},
            {"measure": "same run again (every answer cached)", "value": f"{cached:.2f} s"}]
    for e in summarize(result.rows, list(cfg.strategies)):
        rows.append({"measure": f"{e['strategy']} accuracy strict / flexible",
                     "value": f"{e['strict_correct']}/{e['n']} / {e['flexible_correct']}/{e['n']}"})
    return rows


def lite_accuracy(args) -> str:
    """SmolLM2 on the first 50 questions of DATA's test split with every strategy (answers cached as usual)."""
    from core import icl, profiles
    from core.icl import table_text

    cfg = icl.IclConfig(model_id=profiles.LITE.generator, dataset=args.accuracy, n=50, first=True,
                        max_new_tokens=args.max_new_tokens, samples=args.samples, shots=args.shots)
    return table_text(icl.run(cfg))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench icl", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU, end to end")
    parser.add_argument("--lite", action="store_true", help="SmolLM2 timing on this CPU")
    parser.add_argument("--accuracy", metavar="DATA", help="SmolLM2 accuracy table on DATA's first 50 test questions")
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=150, help="the hand-set batch timed after the app's default")
    parser.add_argument("--bf16", action="store_true", help="bf16 weights instead of the full profile's 4-bit")
    parser.add_argument("--slice", type=int, default=6, help="prompts timed the course notebook's way")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--max-new-tokens", type=int, default=256, help="--lite / --accuracy")
    parser.add_argument("--samples", type=int, default=5, help="self-consistency k for --accuracy")
    parser.add_argument("--shots", type=int, default=8, help="few-shot exemplars for --accuracy")
    args = parser.parse_args(argv)
    if args.smoke:
        args.questions, args.batch_size, args.slice, args.new_tokens = 4, 8, 2, 8
    print(header())
    if args.accuracy:
        print(lite_accuracy(args))
    else:
        print(table(lite_timing(args) if args.lite else gpu_sweep(args)))
    return 0
