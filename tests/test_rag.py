"""The recipe index (build, persist, reload, corruption), retrieval scores and hit@k, with a tiny random BERT
embedding built here; and the real MiniLM finding indexed dishes by name."""
import json
import math

import numpy as np
import pytest

from core import profiles
from core.rag import index as rag_index
from testing.tiny import save_tiny_bert

RECIPES = "assets/recipes"
QUERIES = ["How do I make pork chop noodle soup?", "banana bread", "something with shrimp and garlic",
           "¿Cómo preparo una sopa de fideos?"]


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    return str(save_tiny_bert(tmp_path_factory.mktemp("tiny-bert")))


@pytest.fixture(scope="session")
def tiny_embed(tiny_bert_dir):
    return rag_index.load_embedding(tiny_bert_dir)


@pytest.fixture(scope="session")
def train_rows():
    return rag_index.load_recipes(RECIPES, "train")


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("ALAB_CACHE", str(tmp_path / "cache"))


def names_and_scores(index, top_k=5):
    return [[(s.name, s.score) for s in rag_index.retrieve(index, q, top_k)] for q in QUERIES]


def assert_same_retrieval(got, expected):
    assert [[n for n, _ in q] for q in got] == [[n for n, _ in q] for q in expected]
    assert [[s for _, s in q] for q in got] == [pytest.approx([s for _, s in q], abs=1e-6) for q in expected]


def test_documents_are_the_seeds_text_one_node_per_recipe(train_rows):
    row = train_rows[0]
    assert rag_index.recipe_text(row) == f"{row['name']} \n\n {row['ingredients']} \n\n {row['steps']}"
    nodes = rag_index.recipe_nodes(train_rows)
    assert len(nodes) == len(train_rows) == 48
    # metadata (name, uid) is kept for display but neither embedded nor shown to the LLM
    assert all(n.get_content(metadata_mode="embed") == n.get_content(metadata_mode="llm") == rag_index.recipe_text(r)
               for n, r in zip(nodes, train_rows))


def test_index_persists_and_reloads_with_identical_retrieval(train_rows, tiny_bert_dir, tiny_embed, tmp_path):
    built = rag_index.open_index(train_rows, RECIPES, tiny_bert_dir, tiny_embed, root=tmp_path)
    assert built.built and not built.recovered and built.index.vector_store.client.ntotal == 48
    loaded = rag_index.open_index(train_rows, RECIPES, tiny_bert_dir, tiny_embed, root=tmp_path)
    assert not loaded.built and loaded.folder == built.folder
    assert_same_retrieval(names_and_scores(loaded.index), names_and_scores(built.index))
    # another embedding model or an edited recipe gets its own folder
    assert rag_index.index_folder(RECIPES, "other-model", ["x"], tmp_path) != built.folder
    edited = [dict(train_rows[0], steps="boil it"), *train_rows[1:]]
    assert rag_index.index_folder(RECIPES, tiny_bert_dir, [rag_index.recipe_text(r) for r in edited],
                                  tmp_path) != built.folder


@pytest.fixture
def no_tiktoken(tmp_path, monkeypatch):
    """The GPU machine's condition: TIKTOKEN_CACHE_DIR names a folder without llama-index's default tokenizer,
    so any use of it tries a download (and fails offline)."""
    import llama_index.core

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty-tiktoken-cache"))
    monkeypatch.setattr(llama_index.core, "global_tokenizer", None)


def test_index_needs_no_tiktoken(no_tiktoken, train_rows, tiny_bert_dir, tiny_embed, tmp_path):
    built = rag_index.open_index(train_rows, RECIPES, tiny_bert_dir, tiny_embed, root=tmp_path)
    loaded = rag_index.open_index(train_rows, RECIPES, tiny_bert_dir, tiny_embed, root=tmp_path)
    assert built.built and not loaded.built and len(rag_index.retrieve(loaded.index, QUERIES[0], 3)) == 3


def _truncate(folder):
    path = folder / "docstore.json"
    path.write_text(path.read_text()[:1000])


CORRUPTIONS = [  # (how the folder is damaged, why it matters)
    (_truncate, "a crash while writing JSON"),
    (lambda f: (f / "default__vector_store.json").unlink(), "the FAISS file deleted"),
    (lambda f: (f / "default__vector_store.json").write_bytes(b"not faiss"), "the FAISS file overwritten"),
    (lambda f: (f / rag_index.META).write_text(json.dumps({"format": 1, "size": 7, "dim": 32})), "a stale count"),
    (lambda f: (f / rag_index.META).unlink(), "a build that never finished"),
]


@pytest.mark.parametrize("damage, why", CORRUPTIONS)
def test_a_broken_index_folder_is_rebuilt_with_a_message(damage, why, train_rows, tiny_bert_dir, tiny_embed, tmp_path):
    first = rag_index.open_index(train_rows, RECIPES, tiny_bert_dir, tiny_embed, root=tmp_path)
    expected = names_and_scores(first.index)
    damage(first.folder)
    again = rag_index.open_index(train_rows, RECIPES, tiny_bert_dir, tiny_embed, root=tmp_path)
    assert again.built and again.recovered and "could not be read" in again.message, why
    assert_same_retrieval(names_and_scores(again.index), expected)
    third = rag_index.open_index(train_rows, RECIPES, tiny_bert_dir, tiny_embed, root=tmp_path)
    assert not third.built, "the rebuilt folder loads next time"


def test_scores_are_cosine_similarities_sorted_descending(train_rows, tiny_bert_dir, tiny_embed, tmp_path):
    index = rag_index.open_index(train_rows, RECIPES, tiny_bert_dir, tiny_embed, root=tmp_path).index
    docs = np.array(tiny_embed.get_text_embedding_batch([rag_index.recipe_text(r) for r in train_rows]))
    by_name = {r["name"]: i for i, r in enumerate(train_rows)}
    for query in QUERIES:
        found = rag_index.retrieve(index, query, 10)
        scores = [s.score for s in found]
        assert len(found) == 10 and scores == sorted(scores, reverse=True)
        assert all(-1 - 1e-5 <= s <= 1 + 1e-5 for s in scores)
        q = np.array(tiny_embed.get_query_embedding(query))
        cosine = docs @ q / (np.linalg.norm(docs, axis=1) * np.linalg.norm(q))
        assert scores == pytest.approx([cosine[by_name[s.name]] for s in found], abs=1e-4)
        assert scores[0] == pytest.approx(cosine.max(), abs=1e-4), "the best recipe comes first"


HITS = [  # (retrieved names per question, wanted dish per question, expected {k: rate}, why)
    ([["a", "b", "c"], ["x", "a", "y"], ["q", "r", "s"]], ["a", "a", "s"], {1: 1 / 3, 3: 1.0}, "ranks 1, 2, 3"),
    ([["b", "c", "d"], ["a"]], ["a", "a"], {1: 0.5, 3: 0.5}, "a miss counts against both k"),
    ([["Banana Bread", "x", "y"]], ["banana bread"], {1: 1.0, 3: 1.0}, "names compare case-insensitively"),
    ([["x", "y", "z", "a"]], ["a"], {1: 0.0, 3: 0.0}, "rank 4 is outside top 3"),
]


@pytest.mark.parametrize("retrieved, wanted, expected, why", HITS)
def test_hit_rates(retrieved, wanted, expected, why):
    assert rag_index.hit_rates(retrieved, wanted, ks=(1, 3)) == pytest.approx(expected), why


def test_hit_rates_need_one_list_per_question():
    with pytest.raises(ValueError, match="one retrieved list per wanted dish"):
        rag_index.hit_rates([["a"]], ["a", "b"])


def test_minilm_finds_indexed_dishes_by_name(train_rows, tmp_path):
    """The real lite embedding model: "How do I make <train dish>?" retrieves that dish first for most dishes."""
    try:
        embed = rag_index.load_embedding(profiles.MINILM)
    except ModuleNotFoundError as exc:
        pytest.skip(str(exc))
    index = rag_index.open_index(train_rows, RECIPES, profiles.MINILM, embed, root=tmp_path).index
    quality = rag_index.index_quality(index, train_rows)
    assert quality["dishes"] == 48
    assert quality["hit@1"] >= 0.9 and quality["hit@3"] >= quality["hit@1"]
    assert not math.isnan(quality["query_ms_median"])


def long_recipe() -> dict:
    """A recipe of ~1800 cl100k tokens: the notebook's splitter (1024 tokens, 200 overlap) cuts it in two or more."""
    steps = " . ".join(f"stir the pot for {i} minutes and add a pinch of salt, pepper and thyme" for i in range(120))
    return {"uid": "long-1", "name": "very long stew", "description": "", "link": "", "ner": "",
            "ingredients": "1 cup water, 2 carrots", "steps": steps}


def test_chunked_nodes_are_what_from_documents_makes(train_rows):
    """The notebook's `VectorStoreIndex.from_documents(documents)` runs Settings.node_parser (llama-index's default
    SentenceSplitter with its tiktoken count) over one text-only Document per recipe: the same chunk texts."""
    from llama_index.core import Document, Settings

    rows = [*train_rows, long_recipe()]
    ours = rag_index.chunked_nodes(rows)
    theirs = Settings.node_parser.get_nodes_from_documents([Document(text=rag_index.recipe_text(r)) for r in rows])
    assert [n.text for n in ours] == [n.text for n in theirs]
    assert len(ours) > len(rows), "the long recipe became several nodes"
    assert [n.metadata["name"] for n in ours].count("very long stew") == len(ours) - len(train_rows)
    assert all(n.get_content(metadata_mode="embed") == n.text for n in ours), "the name is not embedded twice"


def test_a_chunked_index_builds_offline_with_its_own_folder_and_counts(no_tiktoken, train_rows, tiny_bert_dir,
                                                                        tiny_embed, tmp_path):
    rows = [*train_rows, long_recipe()]
    per_recipe = rag_index.open_index(rows, RECIPES, tiny_bert_dir, tiny_embed, root=tmp_path)
    chunked = rag_index.open_index(rows, RECIPES, tiny_bert_dir, tiny_embed, root=tmp_path, mode="chunked")
    assert chunked.folder != per_recipe.folder and "--chunked--" in chunked.folder.name
    assert per_recipe.folder == rag_index.index_folder(RECIPES, tiny_bert_dir, [rag_index.recipe_text(r) for r in rows],
                                                       tmp_path), "one node per recipe keeps its cache key"
    assert per_recipe.counts == "49 recipes -> 49 nodes (one node per recipe)"
    assert chunked.nodes > 49 and chunked.counts == f"49 recipes -> {chunked.nodes} nodes (chunked as the notebook)"
    reloaded = rag_index.open_index(rows, RECIPES, tiny_bert_dir, tiny_embed, root=tmp_path, mode="chunked")
    assert not reloaded.built and reloaded.nodes == chunked.nodes
    found = rag_index.retrieve(reloaded.index, "stir the pot for 100 minutes", reloaded.nodes)  # every node (the tiny
    # embedding is random: a top 20 may miss the stew's chunks)
    assert [s.name for s in found].count("very long stew") > 1, "each chunk's source names its recipe"
    assert all(s.text in rag_index.recipe_text(next(r for r in rows if r["name"] == s.name)) for s in found)
    import llama_index.core

    assert llama_index.core.global_tokenizer is None and not list((tmp_path / "empty-tiktoken-cache").glob("*")), \
        "the notebook's tokenizer came from llama-index's own copy: nothing downloaded, no global set"


def test_an_unknown_index_mode_lists_the_valid_ones(train_rows):
    with pytest.raises(ValueError, match="choose one of recipe, chunked"):
        rag_index.make_nodes(train_rows, "sentences")


def test_the_rag_llm_runs_in_16_bit_only_where_its_weights_fit_with_room(monkeypatch):
    """16-bit decodes 4.1x faster than the notebook's 8-bit (bench/RESULTS.md): "auto" takes it where 2 bytes a
    parameter plus a quarter for answering fit the free memory, and not one byte less."""
    import core.memory
    from transformers import LlamaConfig

    from core.rag import llm as rag_llm

    config = LlamaConfig(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, architectures=["LlamaForCausalLM"])
    params = 2 * 100 * 16 + 2 * (4 * 16 * 16 + 3 * 16 * 32 + 2 * 16) + 16  # embeddings + head, layers, final norm
    needed = 2 * params * 1.25
    monkeypatch.setattr(core.memory, "free_accelerator_bytes", lambda: needed)
    assert rag_llm.half_fits(config)
    monkeypatch.setattr(core.memory, "free_accelerator_bytes", lambda: needed - 1)
    assert not rag_llm.half_fits(config)
    monkeypatch.setattr(core.memory, "free_accelerator_bytes", lambda: None)
    assert not rag_llm.half_fits(config), "no accelerator: nothing to fit"
    with pytest.raises(ValueError, match="choose one of auto, 8bit, 16bit"):
        rag_llm.load_rag_lm("any", "4bit")
