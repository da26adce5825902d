"""The lite GSM8K sample: every calculator note <<expr=value>> is right, the text after it repeats the value, and the
final `#### N` is the last computed value. Questions are unique and none is copied from the real GSM8K."""
import ast
import json
import operator
import re
from fractions import Fraction
from pathlib import Path

import pytest

from core.icl import gold_answer
from tests.conftest import SHARED_DATA

ASSET = Path(__file__).resolve().parent.parent / "assets" / "gsm8k_sample.jsonl"
ROWS = [json.loads(line) for line in ASSET.read_text().splitlines()]
NOTE = re.compile(r"<<([^=<>]+)=([^<>]+)>>([\d.,]*)")
OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def evaluate(expr: str) -> Fraction:
    """Exact arithmetic over + - * / and parentheses; anything else (names, calls, powers) is refused."""
    def walk(node):
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return Fraction(str(node.value))
        if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
            return OPERATORS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        raise ValueError(f"not plain arithmetic: {ast.dump(node)}")
    return walk(ast.parse(expr, mode="eval"))


def test_evaluator_is_exact_and_safe():
    assert evaluate("2*(25+10)") == 70 and evaluate("18/4") == Fraction(9, 2) and evaluate("-3+1") == -2
    with pytest.raises(ValueError):
        evaluate("__import__('os')")


def test_enough_unique_rows():
    assert len(ROWS) >= 45
    assert len({r["question"] for r in ROWS}) == len(ROWS)


@pytest.mark.parametrize("i", range(len(ROWS)))
def test_worked_answer_arithmetic(i):
    answer = ROWS[i]["answer"]
    notes = NOTE.findall(answer)
    assert notes, "every worked answer shows its calculations"
    for expr, value, shown in notes:
        assert evaluate(expr) == Fraction(value), f"<<{expr}={value}>> is wrong"
        assert Fraction(shown.replace(",", "")) == Fraction(value), f"text after <<{expr}={value}>> says {shown}"
    assert answer.splitlines()[-1].startswith("#### ")
    assert Fraction(gold_answer(answer)) == Fraction(notes[-1][1]), "#### N is not the last computed value"


def test_questions_are_not_copied_from_gsm8k():
    folder = SHARED_DATA / "gsm8k"
    if not folder.exists():
        pytest.skip("no shared GSM8K copy here")
    real = {json.loads(line)["question"].strip().lower() for split in ("train", "test")
            for line in (folder / f"{split}.jsonl").read_text().splitlines()}
    assert not {r["question"].strip().lower() for r in ROWS} & real
