"""ICL results: one row per question x strategy (stages, extracted answers, correctness), accuracy per strategy
with 95% Wilson intervals, the CSV/JSON files, text and markdown views and the accuracy chart. No model code here."""
from __future__ import annotations

import csv
import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from core.icl.answers import agreement, extract_answer, majority, numbers_in, same_number
from core.icl.strategies import STRATEGIES, prompt_text
from core.runs import write_json
from core.stats import wilson_interval

MODES = ("strict", "flexible")


def make_row(index: int, question: str, gold: str | None, name: str, stages: list[dict], cached: bool) -> dict:
    """Extracts both answers from the final stage (or votes over the sampled paths) and scores them; a voted row also
    gets the paths' agreement with their majority (flexible answers)."""
    strategy = STRATEGIES[name]
    finals = stages[len(strategy.stages) - 1:] if strategy.voting else stages[-1:]
    texts = [strategy.answer_lead + s["output"] for s in finals]
    answers = {mode: majority([extract_answer(t, mode) for t in texts]) for mode in MODES}
    row = {"index": index, "strategy": name, "question": question, "gold": gold, **answers}
    for mode in MODES:
        row[f"correct_{mode}"] = None if gold is None else same_number(answers[mode], gold)
    row["error"] = error_kind(row, finals, strategy.answer_lead, stages[:len(stages) - len(finals)])
    row["agreement"] = agreement([extract_answer(t) for t in texts]) if strategy.voting else None
    return {**row, "cached": cached, "stages": stages}


# Why a flexible answer is wrong, each read from the outputs; the first that applies names the row (error_kind)
ERROR_KINDS = {
    "cut off mid-reasoning": "the token limit stopped the reasoning before an explicit answer",
    "no number": "the output holds no number at all",
    "finishing error": "the gold number is written in the reasoning (not in the question), but another is extracted",
    "copied from the question": "the answer is one of the question's own numbers",
    "other wrong number": "a number the reasoning arrived at, not the gold one",
}


def error_kind(row: dict, finals: list[dict], lead: str = "", earlier: list[dict] = ()) -> str | None:
    """The kind (ERROR_KINDS) of a wrong flexible answer, None when it is right or there is no gold. `finals` are the
    stages answered from (k paths when voted: cut off when most were), each text `lead` + its output; `earlier` the
    stages before them (a CoT's reasoning that its last stage only reads the number from)."""
    if row["gold"] is None or row["correct_flexible"]:
        return None
    kinds = list(ERROR_KINDS)
    texts = [lead + stage.get("output", "") for stage in finals]
    cut = [bool(stage.get("cut")) and extract_answer(text, "strict") is None for stage, text in zip(finals, texts)]
    if 2 * sum(cut) > len(cut) or any(stage.get("cut") for stage in earlier):
        return kinds[0]
    if row["flexible"] is None:
        return kinds[1]
    given = numbers_in(row.get("question"))
    reasoning = [stage.get("output", "") for stage in earlier] + texts
    if row["gold"] not in given and any(row["gold"] in numbers_in(t) for t in reasoning):
        return kinds[2]
    return kinds[3] if row["flexible"] in given else kinds[4]


def summarize(rows: list[dict], strategies: list[str]) -> list[dict]:
    """Accuracy per strategy in both extraction modes, each with its 95% Wilson interval; the error kinds counted;
    a voted strategy's mean agreement of its paths with their majority (None for the others)."""
    summary = []
    for name in strategies:
        scored = [r for r in rows if r["strategy"] == name and r["gold"] is not None]
        errors = Counter(r["error"] for r in scored if r.get("error"))
        agreements = [r["agreement"] for r in rows if r["strategy"] == name and r.get("agreement") is not None]
        entry = {"strategy": name, "label": STRATEGIES[name].label, "n": len(scored),
                 "cached": sum(r["cached"] for r in scored), "errors": dict(errors.most_common()),
                 "agreement": sum(agreements) / len(agreements) if agreements else None}
        for mode in MODES:
            correct = sum(bool(r[f"correct_{mode}"]) for r in scored)
            low, high = wilson_interval(correct, len(scored))
            entry.update({f"{mode}_correct": correct, f"{mode}_accuracy": correct / len(scored) if scored else 0.0,
                          f"{mode}_low": low, f"{mode}_high": high})
        summary.append(entry)
    return summary


@dataclass
class IclResult:
    config: dict
    rows: list[dict]
    summary: list[dict]
    sample: dict | None  # one evaluated question with its worked answer and gold
    stopped: bool = False
    seconds: float = 0.0
    generated: int = 0  # prompts sent to the model in this run (0 when everything came from the cache)
    batches: list[str] = field(default_factory=list)  # each generation pass's batch size ("batch 150 (auto)")
    run_dir: Path | None = None

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "run_dir": str(self.run_dir) if self.run_dir else None}

    @property
    def json_path(self) -> Path:
        return self.run_dir / "result.json"

    @property
    def csv_path(self) -> Path:
        return self.run_dir / "results.csv"


def flat_rows(rows: list[dict]) -> list[dict]:
    """Rows for CSV: every stage as stageN_name / stageN_prompt / stageN_output columns."""
    flat = []
    for row in rows:
        item = {k: v for k, v in row.items() if k != "stages"}
        for i, stage in enumerate(row["stages"], 1):
            item.update({f"stage{i}_name": stage["name"], f"stage{i}_prompt": prompt_text(stage["prompt"]),
                         f"stage{i}_output": stage["output"]})
        flat.append(item)
    return flat


def write_outputs(result: IclResult) -> None:
    """result.json and results.csv in the run folder (rewritten as rows arrive, so a stopped run keeps them)."""
    write_json(result.json_path, result.to_dict())
    flat = flat_rows(result.rows)
    columns = list(dict.fromkeys(k for item in flat for k in item)) or ["strategy"]
    with open(result.csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(flat)


def percent_with_interval(entry: dict, mode: str) -> str:
    return (f"{entry[f'{mode}_accuracy']:.0%} [{entry[f'{mode}_low']:.0%}, {entry[f'{mode}_high']:.0%}]")


def table_text(result: IclResult) -> str:
    """A markdown table of accuracy per strategy, both modes with 95% Wilson intervals."""
    lines = ["| strategy | n | strict [95% CI] | flexible [95% CI] | cached |", "|---|---|---|---|---|"]
    for e in result.summary:
        lines.append(f"| {e['strategy']} | {e['n']} | {percent_with_interval(e, 'strict')} | "
                     f"{percent_with_interval(e, 'flexible')} | {e['cached']} |")
    note = " (stopped: partial results)" if result.stopped else ""
    return "\n".join(lines) + f"\n\n{result.generated} prompts generated in {result.seconds:.1f} s{note}" + \
        (f" · {batch_text(result)}" if result.batches else "")


def batch_text(result: IclResult) -> str:
    """The batch sizes the generation passes used, e.g. "batch 150 (auto)" or "batches 150, 75 (auto, 1 ...)"."""
    return " · ".join(dict.fromkeys(result.batches))


def accuracy_figure(summary: list[dict]):
    """Grouped bars (strict, flexible) per strategy with their 95% Wilson intervals as error bars."""
    from matplotlib.figure import Figure  # no pyplot: figures are built in server threads

    fig = Figure(figsize=(9, 4), layout="constrained")
    ax = fig.add_subplot()
    width = 0.38
    for offset, mode in ((-width / 2, "strict"), (width / 2, "flexible")):
        acc = [e[f"{mode}_accuracy"] for e in summary]
        errors = [[a - e[f"{mode}_low"] for a, e in zip(acc, summary)],
                  [e[f"{mode}_high"] - a for a, e in zip(acc, summary)]]
        ax.bar([i + offset for i in range(len(summary))], acc, width, yerr=errors, capsize=4, label=mode)
    ax.set_xticks(range(len(summary)), [e["strategy"] for e in summary], rotation=20, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (95% Wilson interval)")
    ax.legend()
    return fig


def strategy_table() -> str:
    """Markdown: each strategy, its stages and what it does."""
    lines = ["| strategy | stages | what it does |", "|---|---|---|"]
    for name, s in STRATEGIES.items():
        stages = " → ".join(st.name for st in s.stages) + (" (k sampled, voted)" if s.voting else "")
        lines.append(f"| `{name}` {s.label} | {stages} | {s.about} |")
    return "\n".join(lines)


def sample_markdown(sample: dict) -> str:
    """Markdown: one question with its worked answer and gold number."""
    return (f"**Sample question** (row {sample['index']}): {sample['question']}\n\n"
            f"**Worked answer:**\n```\n{sample['answer']}\n```\n**Gold:** {sample['gold']}")


def stages_markdown(row: dict) -> str:
    """Markdown: one row's answers, then every stage's prompt and output."""
    parts = [f"**{row['strategy']}** · strict **{row['strict'] or '—'}** · flexible **{row['flexible'] or '—'}**"
             + (f" · gold **{row['gold']}**" if row["gold"] is not None else "")]
    for stage in row["stages"]:
        parts.append(f"**{stage['name']}: prompt**\n```\n{prompt_text(stage['prompt'])}\n```\n"
                     f"**{stage['name']}: output**\n```\n{stage['output']}\n```")
    return "\n\n".join(parts)


AGREEMENT = "agreement with majority"
COMPARISON_COLUMNS = ["model", "strategy", "n", "strict", "flexible", *ERROR_KINDS, AGREEMENT]


def comparison_rows(labels: list[str], results: list[IclResult]) -> list[dict]:
    """One row per model x strategy (COMPARISON_COLUMNS): accuracy in both modes, how many answers went wrong in each
    way, and for self-consistency how often the k paths agreed with their vote ("-" for a single-path strategy)."""
    rows = []
    for label, result in zip(labels, results):
        for e in result.summary:
            agreed = e.get("agreement")
            rows.append({"model": label, "strategy": e["strategy"], "n": e["n"],
                         "strict": percent_with_interval(e, "strict"), "flexible": percent_with_interval(e, "flexible"),
                         **{kind: e["errors"].get(kind, 0) for kind in ERROR_KINDS},
                         AGREEMENT: "-" if agreed is None else f"{agreed:.0%}"})
    return rows


def error_legend() -> str:
    """Markdown: what each error kind of the comparison table means."""
    return " · ".join(f"**{kind}**: {about}" for kind, about in ERROR_KINDS.items())
