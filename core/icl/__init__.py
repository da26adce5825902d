"""ICL lab: GSM8K through prompting strategies, strict and flexible answer extraction, accuracy with intervals.

The contract (see core/__init__.py): `IclConfig`, `IclResult`, `run(cfg, control=None)`; plus `ask` for one
free-text question and `compare_models` for the same evaluation over several models (base and trained adapters).
strategies.py holds the prompt records, answers.py the number extraction, report.py the tables.
"""
from core.icl.answers import extract_answer, gold_answer, majority, same_number
from core.icl.pipeline import (AnswerCache, IclConfig, Problem, answer_cache, ask, compare_models, pick_exemplars,
                               run, select_problems)
from core.icl.report import (COMPARISON_COLUMNS, ERROR_KINDS, IclResult, accuracy_figure, batch_text, comparison_rows,
                             error_kind, error_legend, make_row, percent_with_interval, sample_markdown,
                             stages_markdown, strategy_table, summarize, table_text)
from core.icl.strategies import SHOTS, STRATEGIES, get_strategies, prompt_text, render, worked_solution

__all__ = ["COMPARISON_COLUMNS", "ERROR_KINDS", "AnswerCache", "IclConfig", "IclResult", "Problem", "SHOTS",
           "STRATEGIES", "accuracy_figure", "answer_cache", "ask", "batch_text", "compare_models", "comparison_rows",
           "error_kind", "error_legend", "extract_answer", "get_strategies", "gold_answer", "majority", "make_row",
           "percent_with_interval", "pick_exemplars", "prompt_text", "render", "run", "same_number", "sample_markdown",
           "select_problems", "stages_markdown", "strategy_table", "summarize", "table_text", "worked_solution"]
