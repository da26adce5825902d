"""The RAG tab's answers at the full profile's shapes on a GPU: the RAG LLM's decode speed in 8-bit vs 16-bit, then
the app's own paths (one question answered with recipes and alone, the dish comparison) with random weights.

    python -m bench rag-answer [--dishes 8] [--precisions 8bit,16bit]     # CUDA only (Phi-3-mini shape, bge-small)
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import header, table, timed
from bench.icl import bpe_tokenizer
from bench.rag import BGE_SMALL, save_random_bert, synthetic_recipes

PHI3_MINI = dict(vocab_size=32064, hidden_size=3072, intermediate_size=8192, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096)
NEW_TOKENS = 128  # the notebook's max_new_tokens


def save_random_phi3(folder: Path) -> Path:
    import torch
    from transformers import Phi3Config, Phi3ForCausalLM

    config = Phi3Config(**PHI3_MINI, pad_token_id=0, bos_token_id=1, eos_token_id=2, dtype="bfloat16")
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Phi3ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    bpe_tokenizer().save_pretrained(folder)
    del model
    torch.cuda.empty_cache()
    return folder


def write_recipes(folder: Path, rows: list[dict]) -> Path:
    n = len(rows)
    folder.mkdir(parents=True, exist_ok=True)
    for split, part in (("train", rows[: n - 200]), ("test", rows[n - 200:])):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    return folder


def decode_rows(llm_dir: Path, recipes: list[dict], precisions: list[str]) -> list[dict]:
    """Per precision: one RAG prompt at batch 1 (median of 3), and the RAG prompt with its plain question in one
    batch of 2, exactly NEW_TOKENS new tokens each; through the loader and generate the app uses."""
    import torch

    from core import rag
    from core.generation import GenerationConfig, generate

    rows = []
    for precision in precisions:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        began = time.perf_counter()
        lm = rag.load_rag_lm(str(llm_dir), precision)
        load_s = time.perf_counter() - began
        question = rag.QUESTION.format(name=recipes[0]["name"])
        prompt = rag.qa_prompt(lm.tokenizer, question, [rag.recipe_text(r) for r in recipes[:3]], 1024 - NEW_TOKENS)
        cfg = GenerationConfig(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, temperature=0.7, batch_size=2)
        generate(lm, [prompt], cfg)  # warm-up
        one = [timed(lambda: generate(lm, [prompt], cfg))[0] for _ in range(3)]
        both, _ = timed(lambda: generate(lm, [prompt, question], cfg))
        rows.append({"precision": precision, "backend": lm.backend, "load s": load_s,
                     "RAG answer, batch 1 (s)": statistics.median(one),
                     "tok/s at batch 1": NEW_TOKENS / statistics.median(one),
                     "RAG + plain, one batch of 2 (s)": both,
                     "two answers one after the other (s)": 2 * statistics.median(one),
                     "peak GiB": torch.cuda.max_memory_allocated() / 2**30})
        print(f"measured: {rows[-1]}", flush=True)
        del lm
    return rows


def app_rows(llm_dir: Path, embed_dir: Path, recipes_dir: Path, dishes: int) -> list[dict]:
    """The tab's two buttons as the app runs them (core.rag.run: RAG answer streamed, then the plain one; the dish
    comparison), the first ask including the model loads and the index build."""
    import torch

    from core import rag

    cfg = rag.RagConfig(llm=str(llm_dir), embedding=str(embed_dir), recipes=str(recipes_dir))
    rows = []
    for label in ("ask: RAG + plain answer, first (loads models, builds the index)", "ask: RAG + plain answer, warm"):
        torch.cuda.reset_peak_memory_stats()
        began = time.perf_counter()
        last = None
        for last in rag.run(cfg):
            pass
        rows.append({"path": label, "s": time.perf_counter() - began, "answer words (rag / plain)":
                     f"{len(last.rag.split())} / {len(last.plain.split())}",
                     "peak GiB": torch.cuda.max_memory_allocated() / 2**30})
        print(f"measured: {rows[-1]}", flush=True)
    torch.cuda.reset_peak_memory_stats()
    began = time.perf_counter()
    for last in rag.compare_dishes(cfg, dishes):
        pass
    rows.append({"path": f"dish comparison, {dishes} dishes ({last[2]})", "s": time.perf_counter() - began,
                 "answer words (rag / plain)": "", "peak GiB": torch.cuda.max_memory_allocated() / 2**30})
    return rows


def main(argv: list[str]) -> int:
    import torch

    from core import rag

    parser = argparse.ArgumentParser(prog="python -m bench rag-answer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dishes", type=int, default=8)
    parser.add_argument("--recipes", type=int, default=6118)
    parser.add_argument("--precisions", default="8bit,16bit")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("this benchmark needs CUDA (the lite RAG path is timed by `python -m bench rag --lite`)")
    print(header())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        recipes = synthetic_recipes(args.recipes)
        recipes_dir = write_recipes(root / "recipes", recipes)
        llm_dir = save_random_phi3(root / "phi3")
        print(table(decode_rows(llm_dir, recipes, args.precisions.split(","))), flush=True)
        embed_dir = save_random_bert(root / "bge", BGE_SMALL, [rag.recipe_text(r) for r in recipes[:2000]])
        print(table(app_rows(llm_dir, embed_dir, recipes_dir, args.dishes)))
    return 0
