"""The recipe index at full size and in lite: build, reload and retrieval latency; hit@k with the lite model.

    python -m bench rag            # CUDA: random-weight bge-small shape, 6118 synthetic recipes (targets below)
    python -m bench rag --smoke    # the same code path with tiny shapes on a CPU, end to end in well under 2 min
    python -m bench rag --lite     # the lite profile: all-MiniLM-L6-v2 over assets/recipes (hit@1, hit@3)
    python -m bench rag --answer   # the lite models: RAG + plain answer as two generation calls vs one batched call
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import random
import tempfile
import time
from pathlib import Path

from bench.common import header, median, table
from core import rag

TARGETS = {"build": 15.0, "reload": 2.0, "retrieve_p50_ms": 30.0}  # seconds, seconds, ms, on an H100
BGE_SMALL = dict(vocab_size=30522, hidden_size=384, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=1536, max_position_embeddings=512)
SMOKE = dict(vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
             max_position_embeddings=512)
WORDS = ("salt pepper onion garlic butter olive oil chicken beef pork shrimp rice pasta noodles flour sugar eggs milk "
         "cream cheese tomato basil thyme carrots celery broth stock lemon lime honey mustard vinegar beans potatoes "
         "heat simmer stir bake roast whisk chop slice boil saute season serve cover drain mix fold cool until "
         "golden tender minutes medium high low large pot skillet oven bowl pan add the a and with to in of").split()
UNITS = ("cup", "tablespoon", "teaspoon", "pound", "ounce", "clove", "can")


def recipe_length(rng: random.Random) -> int:
    """Words per recipe: a log-normal around 160 words cut to 80-400, like recipe_nlg_lite's documents."""
    return min(400, max(80, round(rng.lognormvariate(math.log(160), 0.45))))


def synthetic_recipes(n: int, seed: int = 0) -> list[dict]:
    """`n` rows in recipe_nlg_lite's schema whose "name \\n\\n ingredients \\n\\n steps" has a realistic word
    count (whitespace-separated, the " . " between steps included)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        name = " ".join(rng.choices(WORDS, k=3)) + f" {i}"
        target = recipe_length(rng)
        ingredients = ", ".join(f"{rng.randint(1, 4)}.0 {rng.choice(UNITS)} {rng.choice(WORDS)}"
                                for _ in range(target // 10))
        left = target - len(name.split()) - len(ingredients.split())
        sentences = []
        while left > 0:
            k = min(8, left)
            sentences.append(" ".join(rng.choices(WORDS, k=k)))
            left -= k + 1  # the " . " separator is a word too
        rows.append({"uid": f"synthetic-{i}", "name": name, "description": "", "link": "", "ner": "",
                     "ingredients": ingredients, "steps": " . ".join(sentences)})
    return rows


def save_random_bert(path: Path, shape: dict, corpus: list[str]) -> Path:
    """A random-weight BERT of `shape` and a WordPiece tokenizer trained here on `corpus` (no hub)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(corpus, trainers.WordPieceTrainer(
        vocab_size=shape["vocab_size"], special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
                      mask_token="[MASK]", model_max_length=shape["max_position_embeddings"]).save_pretrained(path)
    torch.manual_seed(0)
    BertModel(BertConfig(**shape)).save_pretrained(path)
    return path


def retrieval_ms(index, questions: list[str], top_k: int = 3) -> list[float]:
    retriever = index.as_retriever(similarity_top_k=top_k)
    for q in questions[:5]:  # warm-up: first CUDA calls pick kernels
        retriever.retrieve(q)
    times = []
    for q in questions:
        start = time.perf_counter()
        retriever.retrieve(q)
        times.append(1000 * (time.perf_counter() - start))
    return times


def full_size(n: int, shape: dict, queries: int, check: bool) -> list[dict]:
    """Build, reload and query an index of `n` synthetic recipes with a random BERT of `shape`; `check` compares
    with the H100 targets (only meaningful at full shape on CUDA)."""
    import llama_index.embeddings.huggingface  # noqa: F401  (imported here so the load time below is the model's)

    rows = synthetic_recipes(n)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save_random_bert(Path(tmp) / "bert", shape, [rag.recipe_text(r) for r in rows[:2000]])
        start = time.perf_counter()
        embed = rag.load_embedding(str(model_dir))
        load_s = time.perf_counter() - start
        embed.get_text_embedding_batch([rag.recipe_text(r) for r in rows[:32]])  # warm-up, as a loaded app
        root = Path(tmp) / "index"
        built = rag.open_index(rows, "synthetic", str(model_dir), embed, root=root)
        reloaded = rag.open_index(rows, "synthetic", str(model_dir), embed, root=root)
        assert built.built and not reloaded.built
        questions = [rag.QUESTION.format(name=r["name"]) for r in random.Random(1).sample(rows, queries)]
        times = retrieval_ms(reloaded.index, questions)
        words = [len(rag.recipe_text(r).split()) for r in rows]
    p50 = median(times)

    def verdict(value, target):
        return value <= target if check else ""

    return [
        {"measure": "embedding model load (s)", "value": load_s, "target": "", "ok": ""},
        {"measure": f"build: embed + FAISS + persist, {n} recipes (s)", "value": built.seconds,
         "target": TARGETS["build"], "ok": verdict(built.seconds, TARGETS["build"])},
        {"measure": "reload persisted index (s)", "value": reloaded.seconds, "target": TARGETS["reload"],
         "ok": verdict(reloaded.seconds, TARGETS["reload"])},
        {"measure": f"retrieve top-3, p50 of {queries} (ms)", "value": p50, "target": TARGETS["retrieve_p50_ms"],
         "ok": verdict(p50, TARGETS["retrieve_p50_ms"])},
        {"measure": f"retrieve top-3, p95 of {queries} (ms)", "value": sorted(times)[int(0.95 * len(times))],
         "target": "", "ok": ""},
        {"measure": "words per recipe: min / median / max", "value": f"{min(words)} / {median(words):.0f} / "
                                                                      f"{max(words)}", "target": "", "ok": ""},
    ]


def lite() -> list[dict]:
    """The lite profile on this machine: MiniLM over the lite recipes, built fresh, then reloaded and queried."""
    import llama_index.embeddings.huggingface  # noqa: F401  (imported here so the load time below is the model's)

    from core import profiles

    rows = rag.load_recipes(profiles.LITE.recipes, "train")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        embed = rag.load_embedding(profiles.MINILM)
        load_s = time.perf_counter() - start
        built = rag.open_index(rows, profiles.LITE.recipes, profiles.MINILM, embed, root=Path(tmp))
        reloaded = rag.open_index(rows, profiles.LITE.recipes, profiles.MINILM, embed, root=Path(tmp))
        quality = rag.index_quality(reloaded.index, rows)
    return [{"measure": "MiniLM load (s)", "value": load_s},
            {"measure": f"build, {len(rows)} lite recipes (s)", "value": built.seconds},
            {"measure": "reload persisted index (s)", "value": reloaded.seconds},
            {"measure": f"retrieve top-3, median of {quality['dishes']} (ms)", "value": quality["query_ms_median"]},
            {"measure": 'hit@1, "How do I make {name}?" over indexed dishes', "value": quality["hit@1"]},
            {"measure": "hit@3, same questions", "value": quality["hit@3"]}]


def answer_latency(repeats: int, new_tokens: int) -> list[dict]:
    """Issue #26: the RAG answer and its side-by-side plain answer as two generation calls, one after the other (how
    `rag.run` answered before), vs one batched call (how it answers now): the same two prompts (compact mode's one
    call over the retrieved recipes, and the question alone), exactly `new_tokens` new tokens each, the lite models,
    the two ways alternating in each repeat."""
    from core import profiles
    from core.generation import GenerationConfig, generate

    cfg = rag.RagConfig.from_profile(profiles.LITE, max_new_tokens=new_tokens)
    bundle = rag.load_bundle(rag.bundle_key(cfg.llm, cfg.embedding))
    rows = rag.load_recipes(cfg.recipes, "train")
    with tempfile.TemporaryDirectory() as tmp:
        opened = rag.open_index(rows, cfg.recipes, cfg.embedding, bundle.embed_model, root=Path(tmp))
        found = rag.retrieve(opened.index, cfg.question, cfg.top_k)
    prompts = [rag.qa_prompt(bundle.tokenizer, cfg.question, [s.text for s in found],
                             cfg.context_window - cfg.max_new_tokens), cfg.question]
    settings = GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens, temperature=cfg.temperature,
                                repetition_penalty=cfg.repetition_penalty,
                                no_repeat_ngram_size=cfg.no_repeat_ngram_size)
    generate(bundle.lm, prompts, dataclasses.replace(settings, max_new_tokens=8, min_new_tokens=8))  # warm-up
    two, one = [], []
    for repeat in range(repeats):
        for way in (("two", "one") if repeat % 2 == 0 else ("one", "two")):
            start = time.perf_counter()
            if way == "two":
                for prompt in prompts:
                    generate(bundle.lm, [prompt], settings)
                two.append(time.perf_counter() - start)
            else:
                generate(bundle.lm, prompts, settings)
                one.append(time.perf_counter() - start)
    lengths = [rag.count_tokens(bundle.tokenizer, p) for p in prompts]
    return [{"measure": "prompt tokens, RAG / plain (no chat template)", "value": f"{lengths[0]} / {lengths[1]}"},
            {"measure": f"two calls, RAG then plain, {new_tokens} new tokens each: median of {repeats} (s)",
             "value": median(two)},
            {"measure": f"one batched call, both prompts: median of {repeats} (s)", "value": median(one)},
            {"measure": "speed-up (two calls / one batched call)", "value": median(two) / median(one)}]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench rag", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true", help="tiny shapes (300 recipes unless --recipes), on a CPU")
    mode.add_argument("--lite", action="store_true", help="MiniLM over the lite recipes: latency and hit@k")
    mode.add_argument("--answer", action="store_true",
                      help="the lite models: RAG and plain answer as two generation calls vs one batched call")
    parser.add_argument("--repeats", type=int, default=3, help="--answer: timed repeats of each way")
    parser.add_argument("--new-tokens", type=int, default=128, help="--answer: new tokens per answer (the notebook's)")
    parser.add_argument("--recipes", type=int, default=None, help="default: 6118 (300 with --smoke)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default); on a shared CPU, 1 avoids threads waiting "
                             "on each other")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    if args.lite:
        rows = lite()
    elif args.answer:
        rows = answer_latency(args.repeats, args.new_tokens)
    elif args.smoke:
        rows = full_size(args.recipes or 300, SMOKE, 30, check=False)
    elif not torch.cuda.is_available():
        print("the full-size RAG bench needs CUDA: use --smoke (tiny shapes) or --lite (MiniLM) on a CPU")
        return 2
    else:
        rows = full_size(args.recipes or 6118, BGE_SMALL, args.queries, check=True)
    print(header())
    print(table(rows))
    return 0
