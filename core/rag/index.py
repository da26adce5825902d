"""The recipe index: one llama-index node per recipe, or the recipes chunked as the course notebook's
`VectorStoreIndex.from_documents` does; embedded by a HuggingFace model, held in FAISS (inner product of normalized
vectors, i.e. cosine similarity) and persisted under $ALAB_CACHE/rag/<key>, so a second start loads it. Retrieval and
hit@k live here too; answering with an LLM does not (pipeline.py)."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from core import data, loaders
from core.runs import RunControl, cache_dir, publish_folder

log = logging.getLogger(__name__)
FORMAT = 1  # bump when the on-disk layout changes: older folders then miss the key and are rebuilt
META = "alab_meta.json"  # written last: a folder without it was never finished
EMBED_BATCH = {"cuda": 256, "cpu": 32}
QUESTION = "How do I make {name}?"
INDEX_MODES = {"recipe": "one node per recipe", "chunked": "chunked as the notebook"}  # RagConfig.index_mode
_TIKTOKEN_ENV = threading.Lock()  # os.environ is process-wide: one thread at a time points tiktoken elsewhere


@dataclass(frozen=True)
class Source:
    """One retrieved recipe: its name, cosine similarity to the question, and the text the LLM saw."""
    name: str
    score: float
    text: str
    uid: str


@dataclass
class RecipeIndex:
    index: Any  # llama_index VectorStoreIndex over a FaissVectorStore
    folder: Path
    size: int  # documents: one per recipe
    built: bool  # True when this call embedded the recipes, False when it loaded them from disk
    seconds: float
    message: str  # what happened: "loaded ...", "built ...", or why a broken folder was rebuilt
    recovered: bool = False  # True when a folder that could not be read was rebuilt
    nodes: int = 0  # retrievable units: one per recipe, or more where the notebook's splitter cut a recipe
    mode: str = "recipe"

    @property
    def counts(self) -> str:
        """Documents vs nodes (the notebook's Question 3), e.g. "48 recipes -> 48 nodes (one node per recipe)"."""
        return f"{self.size} recipes -> {self.nodes} nodes ({INDEX_MODES[self.mode]})"


def recipe_text(row: dict) -> str:
    """The course notebook's document: "name \\n\\n ingredients \\n\\n steps"."""
    return f"{row['name']} \n\n {row['ingredients']} \n\n {row['steps']}"


def load_recipes(spec: str, split: str) -> list[dict]:
    rows = list(data.load_split(spec, split))
    if not rows:
        raise ValueError(f"the {split} split of {spec!r} has no recipes: choose another recipes dataset")
    data.validate(rows, "recipes")
    return rows


def recipe_nodes(rows: list[dict]) -> list:
    """One node per recipe, no text splitter. Recipes are short (80-400 words), so a whole recipe is one
    retrievable unit: a source is a dish a person can read, hit@k has one right answer, and no tiktoken is
    needed (llama-index's default splitter counts with it, and it cannot load on the GPU machine). The embedding
    model truncates recipes longer than its window (256/512 tokens); name and ingredients come first, so they
    always count. Metadata is excluded from embedding and prompt: both see exactly the course notebook's text."""
    from llama_index.core.schema import TextNode

    hidden = ["name", "uid"]
    return [TextNode(text=recipe_text(r), id_=f"recipe-{i}", metadata={"name": r["name"], "uid": r["uid"]},
                     excluded_embed_metadata_keys=hidden, excluded_llm_metadata_keys=hidden)
            for i, r in enumerate(rows)]


def notebook_tokenizer():
    """llama-index's default token counter (tiktoken's gpt-3.5-turbo encoding, cl100k), read from the copy
    llama-index ships: its own loader reads that copy only when TIKTOKEN_CACHE_DIR is unset, and elsewhere (the GPU
    machine sets it) tries a download, which fails offline. The same encoding either way, so the same chunks."""
    import llama_index.core
    import tiktoken

    shipped = str(Path(llama_index.core.__file__).parent / "_static" / "tiktoken_cache")
    with _TIKTOKEN_ENV:
        before = os.environ.get("TIKTOKEN_CACHE_DIR")
        os.environ["TIKTOKEN_CACHE_DIR"] = shipped
        try:
            encoding = tiktoken.encoding_for_model("gpt-3.5-turbo")
        finally:
            if before is None:
                del os.environ["TIKTOKEN_CACHE_DIR"]
            else:
                os.environ["TIKTOKEN_CACHE_DIR"] = before
    return partial(encoding.encode, allowed_special="all")


def chunked_nodes(rows: list[dict]) -> list:
    """The course notebook's nodes: one Document per recipe, cut by llama-index's default SentenceSplitter (1024
    tokens, 200 overlap), as `VectorStoreIndex.from_documents` does. A recipe longer than a chunk becomes several
    nodes; each keeps its recipe's name (metadata that neither the embedding nor the LLM sees, as in recipe_nodes)."""
    from llama_index.core import Document
    from llama_index.core.node_parser import SentenceSplitter

    hidden = ["name", "uid"]
    documents = [Document(text=recipe_text(r), id_=f"recipe-{i}", metadata={"name": r["name"], "uid": r["uid"]},
                          excluded_embed_metadata_keys=hidden, excluded_llm_metadata_keys=hidden)
                 for i, r in enumerate(rows)]
    splitter = SentenceSplitter(tokenizer=notebook_tokenizer(), id_func=lambda i, doc: f"{doc.id_}-{i}")
    return splitter.get_nodes_from_documents(documents)


def make_nodes(rows: list[dict], mode: str) -> list:
    if mode not in INDEX_MODES:
        raise ValueError(f"unknown index mode {mode!r}: choose one of {', '.join(INDEX_MODES)}")
    return recipe_nodes(rows) if mode == "recipe" else chunked_nodes(rows)


def _slug(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text.removeprefix("pypi:"))[-40:].strip("_")


def index_folder(dataset: str, embedding: str, texts: list[str], root: Path | None = None,
                 mode: str = "recipe") -> Path:
    """$ALAB_CACHE/rag/<dataset>--<embedding>[--chunked]--<hash of (format, dataset id, its documents, embedding id
    [, mode])>. Hashing the documents themselves covers local files and hub datasets alike: edit a recipe, get a new
    index. The one-node-per-recipe key is what it was before chunking existed, so its cached indexes stay valid."""
    content = hashlib.sha256("\x00".join(texts).encode()).hexdigest()
    extra = [] if mode == "recipe" else [mode]
    key = hashlib.sha256(json.dumps([FORMAT, dataset, content, embedding, *extra]).encode()).hexdigest()[:16]
    root = root if root is not None else cache_dir("rag")
    return root / "--".join([_slug(dataset), _slug(embedding), *extra, key])


def load_embedding(model_id: str):
    """llama-index's HuggingFaceEmbedding on the accelerator when there is one (half precision there), normalized
    output so inner product = cosine. `pypi:` ids resolve to the folder inside the installed package."""
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    name = str(loaders.package_file(model_id)) if model_id.startswith("pypi:") else model_id
    dev = loaders.device()
    extra = {}
    if dev == "cuda":
        import torch

        extra["model_kwargs"] = {"dtype": torch.float16}
    return HuggingFaceEmbedding(model_name=name, device=dev, embed_batch_size=EMBED_BATCH[dev], normalize=True,
                                **extra)


def _splitter(embed_model) -> list:
    """The splitter llama-index applies to documents inserted later (ours arrive as whole-recipe nodes and never
    meet it), counting the embedding model's tokens. Passing it stops llama-index from building its default one,
    which loads tiktoken: that fails on the GPU machine, whose TIKTOKEN_CACHE_DIR lacks the file."""
    from llama_index.core.node_parser import TokenTextSplitter

    tokenizer = embed_model._model.tokenizer  # HuggingFaceEmbedding has no public tokenizer
    return [TokenTextSplitter(chunk_size=embed_model.max_length, chunk_overlap=0,
                              tokenizer=partial(tokenizer.encode, add_special_tokens=False))]


def _embed_nodes(nodes: list, embed_model, control: RunControl | None) -> None:
    """Fills node.embedding in batches (tqdm bar, Stop honoured). Nodes go in order of length, so each batch
    pads little; the index does not care about order."""
    order = sorted(range(len(nodes)), key=lambda i: len(nodes[i].text))
    batch = embed_model.embed_batch_size
    for start in tqdm(range(0, len(order), batch), desc="embedding recipes", unit="batch"):
        if control is not None:
            control.check()
        chunk = [nodes[i] for i in order[start:start + batch]]
        vectors = embed_model.get_text_embedding_batch([n.get_content(metadata_mode="embed") for n in chunk])
        for node, vector in zip(chunk, vectors):
            node.embedding = vector
        if control is not None:
            control.advance(start + len(chunk), len(order), "embedding recipes")


def build(rows: list[dict], embed_model, folder: Path, control: RunControl | None = None, mode: str = "recipe"):
    """Embeds every node (INDEX_MODES), indexes the vectors in FAISS and persists the index to `folder` (written to
    a temporary folder first and renamed, so a crash never leaves a half-written index behind)."""
    import faiss
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.vector_stores.faiss import FaissVectorStore

    nodes = make_nodes(rows, mode)
    _embed_nodes(nodes, embed_model, control)
    dim = len(nodes[0].embedding)
    store = FaissVectorStore(faiss_index=faiss.IndexFlatIP(dim))
    index = VectorStoreIndex(nodes, storage_context=StorageContext.from_defaults(vector_store=store),
                             embed_model=embed_model, transformations=_splitter(embed_model))
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    index.storage_context.persist(persist_dir=str(tmp))
    meta = {"format": FORMAT, "size": len(nodes), "documents": len(rows), "mode": mode, "dim": dim}
    (tmp / META).write_text(json.dumps(meta))
    publish_folder(tmp, folder, replace=True)
    return index


def load(folder: Path, embed_model, size: int):
    """The persisted index and its node count, checked against what it should hold (`size` documents, as many
    nodes in FAISS as in the docstore); raises if anything is missing or inconsistent."""
    from llama_index.core import StorageContext, load_index_from_storage
    from llama_index.vector_stores.faiss import FaissVectorStore

    meta = json.loads((folder / META).read_text())
    store = FaissVectorStore.from_persist_dir(str(folder))
    context = StorageContext.from_defaults(vector_store=store, persist_dir=str(folder))
    index = load_index_from_storage(context, embed_model=embed_model, transformations=_splitter(embed_model))
    counts = {"meta": meta["size"], "faiss": store.client.ntotal, "docstore": len(context.docstore.docs)}
    documents = meta.get("documents", meta["size"])  # folders from before chunking: one node per document
    if meta["format"] != FORMAT or len(set(counts.values())) != 1 or documents != size:
        raise ValueError(f"holds {counts} nodes of {documents} documents, expected {size} documents (format "
                         f"{meta['format']}, expected {FORMAT})")
    return index, meta["size"]


def open_index(rows: list[dict], dataset: str, embedding: str, embed_model, root: Path | None = None,
               control: RunControl | None = None, mode: str = "recipe") -> RecipeIndex:
    """Loads the index for (dataset, its documents, embedding model, index mode) from disk, or builds and persists
    it. A folder that cannot be read (deleted files, truncated JSON, a broken FAISS file) is rebuilt, with a message."""
    folder = index_folder(dataset, embedding, [recipe_text(r) for r in rows], root, mode)
    start = time.perf_counter()
    problem = None
    if folder.exists():
        try:
            index, nodes = load(folder, embed_model, len(rows))
            return RecipeIndex(index, folder, len(rows), False, time.perf_counter() - start,
                               f"loaded the index of {len(rows)} recipes from {folder}", nodes=nodes, mode=mode)
        except Exception as exc:  # corruption shows up as JSON, FAISS, key or value errors alike
            problem = f"the index in {folder} could not be read ({type(exc).__name__}: {exc}), so it was rebuilt"
            log.warning(problem)
    index = build(rows, embed_model, folder, control, mode)
    seconds = time.perf_counter() - start
    return RecipeIndex(index, folder, len(rows), True, seconds,
                       problem or f"built the index of {len(rows)} recipes in {seconds:.1f} s ({folder})",
                       recovered=problem is not None, nodes=index.vector_store.client.ntotal, mode=mode)


def sources(nodes_with_scores) -> list[Source]:
    return [Source(n.node.metadata.get("name", ""), float(n.score), n.node.get_content(),
                   n.node.metadata.get("uid", "")) for n in nodes_with_scores]


def retrieve(index, query: str, top_k: int) -> list[Source]:
    """The top_k recipes for `query`, most similar first."""
    return sources(index.as_retriever(similarity_top_k=top_k).retrieve(query))


def hit_rates(retrieved: list[list[str]], wanted: list[str], ks=(1, 3)) -> dict[int, float]:
    """Fraction of questions whose wanted dish is among the first k retrieved names, for each k. Names compare
    case-insensitively: the full dataset repeats some dish names, and any recipe of the dish answers the question."""
    if len(retrieved) != len(wanted) or not wanted:
        raise ValueError(f"need one retrieved list per wanted dish, got {len(retrieved)} and {len(wanted)}")
    norm = str.casefold
    return {k: sum(norm(w) in map(norm, names[:k]) for names, w in zip(retrieved, wanted)) / len(wanted) for k in ks}


def index_quality(index, rows: list[dict], ks=(1, 3), control: RunControl | None = None) -> dict:
    """hit@k for "How do I make {name}?" over dishes that are in the index (`rows`), plus query latency."""
    retriever = index.as_retriever(similarity_top_k=max(ks))
    retrieved, seconds = [], []
    for row in tqdm(rows, desc="retrieval quality", unit="dish"):
        if control is not None:
            control.check()
        start = time.perf_counter()
        retrieved.append([s.name for s in sources(retriever.retrieve(QUESTION.format(name=row["name"])))])
        seconds.append(time.perf_counter() - start)
    rates = hit_rates(retrieved, [r["name"] for r in rows], ks)
    return {"dishes": len(rows), **{f"hit@{k}": v for k, v in rates.items()},
            "query_ms_median": 1000 * sorted(seconds)[len(seconds) // 2]}
