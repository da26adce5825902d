"""ICL pipeline: strategy registry, seeded subsets and exemplars, staged evaluation on a tiny model, accuracy
against the rows, caching in memory and on disk, Stop, free-text questions, bad input and the CLI."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import LlamaForCausalLM

from core import icl, profiles
from core.icl import accuracy_figure, make_row, summarize
from core.icl.answers import agreement
from core.icl import SHOTS, STRATEGIES, get_strategies, render, worked_solution
from core.runs import REPO_ROOT, RunControl

ASSET = str(Path(__file__).resolve().parent.parent / "assets" / "gsm8k_sample.jsonl")
SHOT = {"question": "Ann has 2 bags of 3 apples. How many apples?", "answer": "2*3=<<2*3=6>>6\n#### 6"}
QUESTION = "Tom has 3 apples and buys 5 more. How many apples does he have?"


def config(model_dir, **overrides):
    settings = dict(model_id=str(model_dir), dataset=ASSET, n=3, first=True, shots=2, samples=2,
                    max_new_tokens=6, batch_size=8, strategies=("baseline", "zero_shot_cot"))
    return icl.IclConfig(**{**settings, **overrides})


@pytest.fixture
def generate_calls(monkeypatch):
    """Counts model.generate calls (the transformers method under core.generation)."""
    calls = []
    original = LlamaForCausalLM.generate

    def counting(self, *args, **kwargs):
        calls.append(kwargs.get("input_ids", args[0] if args else None).shape[0])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LlamaForCausalLM, "generate", counting)
    return calls


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_strategy_renders_every_stage(name):
    strategy = STRATEGIES[name]
    previous = []
    for stage in range(len(strategy.stages)):
        messages = render(strategy, stage, QUESTION, [SHOT], previous)
        text = json.dumps(messages)
        assert messages[-1]["role"] == "user" and "{" not in "".join(m["content"] for m in messages)
        assert QUESTION in text  # every stage sees the question
        assert all(p in text for p in previous)  # and every earlier stage's output
        assert (SHOT["question"] in text) == (SHOTS in strategy.stages[stage].turns)
        previous.append(f"output of stage {stage + 1}")


def test_baseline_prompt_is_the_seeds():
    messages = render(STRATEGIES["baseline"], 0, QUESTION, [], [])
    assert messages == [{"role": "user", "content": f"Problem: {QUESTION}\n\nThe answer number is "}]


def test_exemplar_is_a_worked_answer_without_calculator_notes():
    assert worked_solution(SHOT["answer"]) == "2*3=6\nThe answer is 6."


@pytest.mark.parametrize("names, message", [
    ((), "no strategy selected"),
    (("baseline", "magic"), "unknown strategy 'magic': choose from baseline, role_play"),
    ("  ", "no strategy selected"),
])
def test_bad_strategy_names(names, message):
    with pytest.raises(ValueError, match=message):
        get_strategies(names)


def test_multi_stage_strategies_exist():
    assert {n for n, s in STRATEGIES.items() if len(s.stages) == 2} >= {"zero_shot_cot", "least_to_most",
                                                                          "generated_knowledge"}
    assert STRATEGIES["self_consistency"].voting and STRATEGIES["role_few_shot_sc"].uses_shots


def stage(output, name="answer"):
    return {"name": name, "prompt": [{"role": "user", "content": "q"}], "output": output}


def test_rows_scores_and_chart_from_known_outputs():
    rows = [make_row(0, "q0", "18", "baseline", [stage("18")], False),  # lead makes it explicit: strict too
            make_row(1, "q1", "5", "baseline", [stage("To solve it, 2 + 3 = 5")], False),  # flexible only
            make_row(2, "q2", "7", "baseline", [stage("I do not know")], True),
            make_row(0, "q0", "18", "self_consistency",
                     [stage("The answer is 18.", "path 1"), stage("So 20", "path 2"),
                      stage("The answer is 20", "path 3")], False)]  # strict votes 18 vs 20: tie, first seen wins
    assert [(r["strict"], r["flexible"]) for r in rows] == [("18", "18"), (None, "5"), (None, None), ("18", "20")]
    summary = summarize(rows, ["baseline", "self_consistency"])
    base, sc = summary
    assert (base["n"], base["strict_correct"], base["flexible_correct"], base["cached"]) == (3, 1, 2, 1)
    assert sc["strict_accuracy"] == 1.0 and sc["flexible_accuracy"] == 0.0
    heights = [round(p.get_height(), 6) for p in accuracy_figure(summary).axes[0].patches]
    assert heights == [round(1 / 3, 6), 1.0, round(2 / 3, 6), 0.0]  # strict bars, then flexible bars


@pytest.mark.parametrize("overrides, message", [
    ({"max_new_tokens": 0}, "max new tokens must be > 0"),
    ({"n": 0}, "n must be > 0"),
    ({"batch_size": -2}, "batch size must be > 0"),
    ({"samples": 0}, "samples must be > 0"),
    ({"samples": 10 ** 18}, "self-consistency k must be at most 32"),
    ({"max_new_tokens": 10 ** 18}, "max new tokens must be at most 2048"),
    ({"temperature": 0.0}, "temperature for self-consistency must be > 0"),
    ({"strategies": ()}, "no strategy selected"),
])
def test_bad_settings(overrides, message):
    with pytest.raises(ValueError, match=message):
        config("m", **overrides)


def test_seeded_subset_is_stable_and_excluded_from_exemplars():
    cfg = icl.IclConfig(dataset=ASSET, n=50, seed=42)
    first, again = icl.select_problems(cfg), icl.select_problems(cfg)
    indices = [p.index for p in first]
    assert indices == [p.index for p in again] and len(set(indices)) == 50
    assert indices != list(range(50))  # a sample, not the head of the file
    assert indices != [p.index for p in icl.select_problems(icl.IclConfig(dataset=ASSET, n=50, seed=7))]
    assert [p.index for p in icl.select_problems(icl.IclConfig(dataset=ASSET, n=5, first=True))] == [0, 1, 2, 3, 4]
    shots = icl.pick_exemplars(cfg, {p.question for p in first})
    assert len(shots) == 8 and not {s["question"] for s in shots} & {p.question for p in first}


def test_subset_larger_than_split_and_too_few_exemplars():
    with pytest.raises(ValueError, match="larger than the test split .* lower n"):
        icl.select_problems(icl.IclConfig(dataset=ASSET, n=10_000))
    cfg = icl.IclConfig(dataset=ASSET, n=58)
    with pytest.raises(ValueError, match="few-shot needs 8 exemplars but only 4"):
        icl.pick_exemplars(cfg, {p.question for p in icl.select_problems(cfg)})


def test_non_numeric_gold_names_the_row(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q?", "answer": "#### 4"}) + "\n"
                   + json.dumps({"question": "How many?", "answer": "Lots.\n#### many"}) + "\n")
    with pytest.raises(ValueError, match="row 1: gold answer 'many' is not a number"):
        icl.select_problems(icl.IclConfig(dataset=str(bad), n=2, first=True))


def test_evaluation_accuracy_is_the_fraction_of_correct_rows(tiny_lm_dir, tmp_path, generate_calls):
    cfg = config(tiny_lm_dir, n=6)
    first = icl.run(cfg)
    assert first.generated == 6 + 6 * 2 and not first.stopped
    # Same questions, gold rewritten: rows 0-2 get the model's own flexible baseline answer, rows 3-5 a number it
    # never says. Baseline flexible accuracy must then be exactly (answers found among rows 0-2) / 6.
    baseline = [r for r in first.rows if r["strategy"] == "baseline"]
    rewritten = tmp_path / "gold.jsonl"
    rewritten.write_text("".join(json.dumps({"question": r["question"], "answer": f"#### {gold}"}) + "\n"
                                 for r, gold in zip(baseline, [r["flexible"] or "987654321" for r in baseline[:3]]
                                                    + ["987654321"] * 3)))
    expected = sum(r["flexible"] is not None for r in baseline[:3])
    calls_before = len(generate_calls)
    second = icl.run(config(tiny_lm_dir, n=6, dataset=str(rewritten)))
    assert len(generate_calls) == calls_before and second.generated == 0  # every answer came from the cache
    entry = next(e for e in second.summary if e["strategy"] == "baseline")
    assert entry["flexible_correct"] == expected and entry["flexible_accuracy"] == pytest.approx(expected / 6)
    for e in second.summary:
        rows = [r for r in second.rows if r["strategy"] == e["strategy"]]
        assert e["strict_accuracy"] == pytest.approx(sum(bool(r["correct_strict"]) for r in rows) / len(rows))
    saved = json.loads(second.json_path.read_text())
    assert saved["summary"] == summarize(saved["rows"], ["baseline", "zero_shot_cot"])
    assert second.csv_path.read_text().count("\n") > 12


def test_multi_stage_runs_both_stages_and_self_consistency_votes(tiny_lm_dir, tmp_path, generate_calls):
    cfg = config(tiny_lm_dir, n=2, strategies=("zero_shot_cot", "least_to_most", "self_consistency"))
    result = icl.run(cfg)
    # round 1: 4 greedy stage-1 prompts + 2 questions x 2 sampled paths; round 2: 4 greedy stage-2 prompts
    assert generate_calls == [4, 4, 4]
    for row in result.rows:
        stages = row["stages"]
        if row["strategy"] == "self_consistency":
            assert [s["name"] for s in stages] == ["path 1", "path 2"]
        else:
            assert len(stages) == 2
            assert any(stages[0]["output"] in m["content"] for m in stages[1]["prompt"])  # stage 2 used stage 1


def test_cache_survives_a_new_process_and_depends_on_settings(tiny_lm_dir, tmp_path, generate_calls):
    cfg = config(tiny_lm_dir, strategies=("baseline",))
    first = icl.run(cfg)
    icl.answer_cache().memory.clear()  # as in a new process: read from disk
    again = icl.run(cfg)
    assert again.generated == 0 and all(r["cached"] for r in again.rows)
    assert [r["stages"] for r in again.rows] == [r["stages"] for r in first.rows]
    longer = icl.run(config(tiny_lm_dir, strategies=("baseline",), max_new_tokens=7))
    assert longer.generated == 3  # other generation settings: not the same answers


@pytest.mark.parametrize("second", ["zero_shot_cot", "self_consistency"])
def test_stop_keeps_the_finished_strategies(tiny_lm_dir, tmp_path, second):
    # self_consistency: the stop lands in the sampled pass of the same stage, after baseline's greedy pass finished
    control = RunControl()
    control.on_progress = lambda fraction, message: control.stop()  # stop as soon as the first batch is done
    cfg = config(tiny_lm_dir, strategies=("baseline", second), batch_size=16)
    result = icl.run(cfg, control)
    assert result.stopped
    assert [r["strategy"] for r in result.rows] == ["baseline"] * 3
    saved = json.loads(result.json_path.read_text())
    assert saved["stopped"] and len(saved["rows"]) == 3


def test_ask_answers_a_free_text_question(tiny_lm_dir, tmp_path):
    cfg = config(tiny_lm_dir, strategies=("baseline", "few_shot_cot"))
    rows = icl.ask(f"  {QUESTION} ", cfg)
    assert [r["strategy"] for r in rows] == ["baseline", "few_shot_cot"]
    assert rows[0]["question"] == QUESTION and rows[0]["gold"] is None and rows[0]["correct_strict"] is None
    assert sum(m["role"] == "assistant" for m in rows[1]["stages"][0]["prompt"]) == 2  # two exemplars
    for blank in ("", "   \n"):
        with pytest.raises(ValueError, match="the question is empty"):
            icl.ask(blank, cfg)


def test_cli_prints_a_table(tiny_lm_dir, tmp_path):
    env = {**os.environ, "ALAB_CACHE": str(tmp_path / "cache"), "ALAB_RUNS": str(tmp_path / "runs")}
    out = subprocess.run([sys.executable, "-m", "core", "icl", "--profile", "lite", "--generator", str(tiny_lm_dir),
                          "--n", "2", "--strategies", "baseline,zero_shot_cot", "--max-new-tokens", "4"],
                         cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "| baseline | 2 |" in out.stdout and "| zero_shot_cot | 2 |" in out.stdout
    written = Path(out.stdout.strip().splitlines()[-1].removeprefix("wrote "))
    payload = json.loads(written.read_text())
    assert payload["job"] == "icl" and len(payload["rows"]) == 4 and (written.parent / "results.csv").exists()
    assert payload["profile"]["gsm8k"] == profiles.LITE.gsm8k


PENS = "A box holds 16 pens. Ann takes 8 out and puts them back. How many pens are in the box?"  # gold 16
ERRORS = [  # (strategy, question, gold, stages as (output, cut), expected kind, why)
    ("baseline", QUESTION, "8", [("8", False)], None, "right: no error"),
    ("baseline", QUESTION, None, [("9", False)], None, "a free-text question has no gold"),
    ("baseline", QUESTION, "8", [("I do not know", False)], "no number", "no number anywhere"),
    ("role_play", QUESTION, "8", [("First I take the 3 apples and then", True)], "cut off mid-reasoning",
     "the limit stopped it before an explicit answer: its last number is not its answer"),
    ("role_play", QUESTION, "8", [("The answer is 9. To check it, I add 3 and", True)], "other wrong number",
     "an explicit answer came before the cut: the limit is not why it is wrong"),
    ("role_play", QUESTION, "8", [("3 + 5 = 8 apples, plus the 1 he ate. The answer is 9.", False)],
     "finishing error", "the reasoning reached the gold number, the answer is another"),
    ("role_play", QUESTION, "8", [("He has the apples he buys. The answer is 5.", False)], "copied from the question",
     "5 is the question's own number"),
    ("role_play", QUESTION, "8", [("3 * 5 = 15. The answer is 15.", False)], "other wrong number",
     "a computed number, neither the gold nor the question's"),
    ("role_play", PENS, "16", [("16 pens minus 8 is 8. The answer is 8.", False)], "copied from the question",
     "the gold is the question's own number: restating it is no finishing error"),
    ("zero_shot_cot", QUESTION, "8", [("3 + 5 = 8 so", True), ("9", False)], "cut off mid-reasoning",
     "the reasoning stage ran into the limit; the extraction read a guess"),
    ("zero_shot_cot", QUESTION, "8", [("3 + 5 = 8.", False), ("9", False)], "finishing error",
     "the gold is in the first stage's reasoning, the extraction says 9"),
    ("self_consistency", QUESTION, "8", [("Add 3 to", True), ("We start with", True), ("The answer is 9.", False)],
     "cut off mid-reasoning", "two of three paths were cut before answering"),
    ("self_consistency", QUESTION, "8", [("Add 3 to", True), ("The answer is 9.", False), ("The answer is 9", False)],
     "other wrong number", "most paths answered: the vote, not the limit, decided"),
]


@pytest.mark.parametrize("name, question, gold, outputs, expected, why", ERRORS, ids=[e[5] for e in ERRORS])
def test_error_kind_is_read_from_the_outputs(name, question, gold, outputs, expected, why):
    stages = [{**stage(output), "cut": cut} for output, cut in outputs]
    row = make_row(0, question, gold, name, stages, False)
    assert row["error"] == expected, why
    assert expected is None or expected in icl.ERROR_KINDS


AGREEMENTS = [  # (the k paths' flexible answers, agreement with their majority, why)
    (["8", "8", "9"], 2 / 3, "two of three agree with the vote"),
    (["8", None, None], 1 / 3, "a path with no number disagrees"),
    (["18", "18.0", "$18"], 1.0, "compared as numbers, not as text"),
    ([None, None], None, "no number: no majority to agree with"),
]


@pytest.mark.parametrize("answers, expected, why", AGREEMENTS, ids=[a[2] for a in AGREEMENTS])
def test_agreement_with_the_majority(answers, expected, why):
    assert agreement(answers) == (None if expected is None else pytest.approx(expected)), why


def test_the_comparison_counts_each_error_kind_and_the_paths_agreement():
    voted = [("The answer is 8.", False), ("The answer is 8.", False), ("So 5", False)]
    rows = [make_row(0, QUESTION, "8", "baseline", [stage("5")], False),  # copied from the question
            make_row(1, QUESTION, "8", "baseline", [stage("nothing")], False),  # no number
            make_row(0, QUESTION, "8", "self_consistency", [{**stage(o), "cut": c} for o, c in voted], False),
            make_row(1, QUESTION, "8", "self_consistency",
                     [{**stage(o), "cut": False} for o in ("The answer is 9", "The answer is 9", "The answer is 9")],
                     False)]
    names = ["baseline", "self_consistency"]
    result = icl.IclResult(config={}, rows=rows, summary=summarize(rows, names), sample=None)
    base, sc = icl.comparison_rows(["Post-DPO"], [result])
    assert list(base) == icl.COMPARISON_COLUMNS
    assert (base["copied from the question"], base["no number"], base["other wrong number"]) == (1, 1, 0)
    assert base["agreement with majority"] == "-", "one path: nothing to agree"
    assert sc["other wrong number"] == 1 and sc["agreement with majority"] == "83%", "mean of 2/3 and 3/3"


def test_compare_models_runs_each_model_and_tables_their_errors(tiny_lm_dir, tmp_path):
    from testing.tiny import save_tiny_lm

    other = save_tiny_lm(tmp_path / "other-lm", seed=1)
    cfg = config(tiny_lm_dir, strategies=("baseline",), max_new_tokens=3)
    results = icl.compare_models(cfg, {"base": str(tiny_lm_dir), "other": str(other)})
    assert [r.config["model_id"] for r in results] == [str(tiny_lm_dir), str(other)]
    rows = icl.comparison_rows(["base", "other"], results)
    assert [(r["model"], r["strategy"], r["n"]) for r in rows] == [("base", "baseline", 3), ("other", "baseline", 3)]
    for row, result in zip(rows, results):
        wrong = [r for r in result.rows if not r["correct_flexible"]]
        assert all(r["error"] in icl.ERROR_KINDS for r in wrong)
        assert sum(result.summary[0]["errors"].values()) == len(wrong)
        assert sum(row[kind] for kind in icl.ERROR_KINDS) == len(wrong), "each wrong answer counted once"
    # 3 new tokens never end a sentence: every stage ran into the limit
    assert all(s["cut"] for r in results[0].rows for s in r["stages"])
    with pytest.raises(ValueError, match="no model picked"):
        icl.compare_models(cfg, {})
