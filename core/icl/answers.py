"""Numbers out of model text: strict/flexible answer extraction, numeric comparison, GSM8K gold parsing,
majority voting. Pure functions; knows nothing about models or prompts."""
from __future__ import annotations

import re
from collections import Counter
from decimal import Decimal
from fractions import Fraction

# A number as models write it: optional sign (only when not glued to a word or digit, so "5-3" is 5 and 3),
# optional "$", thousands separators, decimals, and a simple fraction "3/4".
_NUMBER = (r"(?:(?<![\w)\]])(?P<neg>[-−–])\s?)?\$?\s?"
           r"(?P<int>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
           r"(?:\s?/\s?(?P<den>\d+)\b(?![.,]\d))?")
NUMBER_RE = re.compile(_NUMBER)
# Explicit final answers. Each is followed directly by the number (markup already stripped).
_STRICT_RE = re.compile(
    r"(?:####|\\boxed\s*\{|\b(?:final\s+)?answer(?:\s+number)?(?:\s*\([^)]{0,40}\))?\s*(?:is|:|=|would\s+be|will\s+be))"
    r"\s*:?\s*(?:\\text\{\s*)?" + _NUMBER, re.IGNORECASE)
_MARKUP_RE = re.compile(r"\*\*|__|\\[()\[\]]|\\[,!;]|\\\$|\\%|\$\$")
_FRAC_RE = re.compile(r"\\d?frac\{([^{}]*)\}\{([^{}]*)\}")


def _clean(text: str) -> str:
    """Drops markdown bold and LaTeX delimiters; rewrites \\frac{a}{b} as a/b; keeps "$" for currency."""
    text = _FRAC_RE.sub(r"\1/\2", text)
    return _MARKUP_RE.sub(lambda m: "$" if m.group() == "\\$" else "", text)


def _value(match: re.Match) -> Fraction | None:
    value = Fraction(match["int"].replace(",", ""))
    if match["den"] is not None:
        if int(match["den"]) == 0:
            return None
        value /= int(match["den"])
    return -value if match["neg"] else value


def format_number(value: Fraction) -> str:
    """Canonical text: "18", "-3", "0.5", "1234"; fractions without a finite decimal stay "p/q"."""
    if value.denominator == 1:
        return str(value.numerator)
    d = value.denominator
    while d % 2 == 0:
        d //= 2
    while d % 5 == 0:
        d //= 5
    if d != 1:
        return f"{value.numerator}/{value.denominator}"
    text = format(Decimal(value.numerator) / Decimal(value.denominator), "f")
    return text.rstrip("0").rstrip(".")


def _last(matches) -> str | None:
    values = [v for v in (_value(m) for m in matches) if v is not None]
    return format_number(values[-1]) if values else None


def extract_answer(text: str | None, mode: str = "flexible") -> str | None:
    """The final number in a model's answer, normalized, or None.
    strict: only an explicit final answer ("#### N", "The answer is N", "\\boxed{N}", "Answer: N"), the last one;
    flexible: that, else the last number anywhere in the text."""
    if mode not in ("strict", "flexible"):
        raise ValueError(f"extraction mode must be 'strict' or 'flexible', got {mode!r}")
    if not text:
        return None
    text = _clean(text)
    found = _last(_STRICT_RE.finditer(text))
    if found is not None or mode == "strict":
        return found
    return _last(NUMBER_RE.finditer(text))


def numbers_in(text: str | None) -> set[str]:
    """Every number written in the text, normalized (the "18" of "$18.00"): what a question gives, or what a
    reasoning computed along the way."""
    if not text:
        return set()
    return {format_number(v) for v in map(_value, NUMBER_RE.finditer(_clean(text))) if v is not None}


def parse_number(text: str | None) -> Fraction | None:
    """The value of a number written on its own ("1,234", "$18.00", "-3", "3/4"); None if it is not one."""
    if text is None:
        return None
    match = NUMBER_RE.fullmatch(_clean(text).strip().rstrip(".%").strip())
    return _value(match) if match else None


def same_number(a: str | None, b: str | None) -> bool:
    """Numeric equality: "18" == "18.0" == "18.00" == "$18"; None never matches."""
    x, y = parse_number(a), parse_number(b)
    return x is not None and x == y


def gold_answer(answer: str) -> str:
    """The number after the last "#### " of a GSM8K worked answer (or a bare number), normalized."""
    tail = answer.rsplit("####", 1)[-1].strip()
    value = parse_number(tail)
    if value is None:
        raise ValueError(f"gold answer {tail[:40]!r} is not a number: GSM8K answers end with '#### N'")
    return format_number(value)


def agreement(answers: list[str | None]) -> float | None:
    """Self-consistency's agreement: the share of the k sampled answers equal to their majority (a path with no
    number disagrees); None when no path gave a number."""
    voted = majority(answers)
    return None if voted is None else sum(same_number(a, voted) for a in answers) / len(answers)


def majority(answers: list[str | None]) -> str | None:
    """Self-consistency vote: the most frequent numeric answer (ties: the one seen first); None if none."""
    values = [format_number(v) for v in map(parse_number, answers) if v is not None]
    return Counter(values).most_common(1)[0][0] if values else None  # most_common keeps first-seen order on ties

