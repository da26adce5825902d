"""RAG recipe chat: LlamaIndex over recipes (one FAISS-backed node per recipe, or chunked as the course notebook), a
query engine and the same LLM alone answering in one batched pass, a chat with history, a comparison over test dishes,
the class's vote on it, and hit@k of retrieval.

The contract (see core/__init__.py): `RagConfig`, `RagAnswer` (the streamed result), `run(cfg, control=None)`;
plus `chat`, `compare_dishes`, `start_vote`/`vote_tally` and `retrieval_quality` (hit@k over the recipes;
`index_quality` over an opened index). index.py owns the index, llm.py the model bundle, batching.py the batched
llama-index calls, compare.py the comparison, votes.py its vote.
"""
from core.rag.compare import COMPARE_COLUMNS, compare_dishes, read_rows
from core.rag.index import (INDEX_MODES, QUESTION, Source, index_quality, load_embedding, load_recipes, open_index,
                            recipe_text, retrieve)
from core.rag.llm import RAG_PRECISIONS, RagBundle, bundle_key, count_tokens, load_bundle, load_rag_lm, qa_prompt
from core.rag.pipeline import EXAMPLE_QUESTION, RESPONSE_MODES, RagAnswer, RagConfig, chat, retrieval_quality, run
from core.rag.votes import KIND, DishVotes, RagVoteTally, start_vote, vote_tally

__all__ = ["COMPARE_COLUMNS", "EXAMPLE_QUESTION", "INDEX_MODES", "KIND", "QUESTION", "RAG_PRECISIONS",
           "RESPONSE_MODES", "DishVotes", "RagAnswer", "RagBundle", "RagConfig", "RagVoteTally", "Source",
           "bundle_key", "chat", "compare_dishes", "count_tokens", "index_quality", "load_bundle", "load_embedding",
           "load_rag_lm", "load_recipes", "open_index", "qa_prompt", "read_rows", "recipe_text", "retrieval_quality",
           "retrieve", "run", "start_vote", "vote_tally"]
