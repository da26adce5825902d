"""RAG recipe chat: LlamaIndex over recipes (one FAISS-backed node per recipe), the same LLM answering with and
without retrieval, a chat with history, a comparison over test dishes, and hit@k of retrieval.

The contract (see core/__init__.py): `RagConfig`, `RagAnswer` (the streamed result), `run(cfg, control=None)`;
plus `chat`, `compare_dishes` and `retrieval_quality` (hit@k over the recipes; `index_quality` over an opened
index). index.py owns the index, llm.py the model bundle.
"""
from core.rag.index import (QUESTION, Source, index_quality, load_embedding, load_recipes, open_index, recipe_text,
                            retrieve)
from core.rag.llm import RAG_PRECISIONS, RagBundle, bundle_key, load_bundle, load_rag_lm, qa_prompt
from core.rag.pipeline import (COMPARE_COLUMNS, EXAMPLE_QUESTION, RESPONSE_MODES, RagAnswer, RagConfig, chat,
                               compare_dishes, retrieval_quality, run)

__all__ = ["COMPARE_COLUMNS", "EXAMPLE_QUESTION", "QUESTION", "RAG_PRECISIONS", "RESPONSE_MODES", "RagAnswer", "RagBundle", "RagConfig",
           "Source", "bundle_key", "chat", "compare_dishes", "index_quality", "load_bundle", "load_embedding", "load_rag_lm",
           "load_recipes", "open_index", "qa_prompt", "recipe_text", "retrieval_quality", "retrieve", "run"]
