"""The prompting strategies of the ICL lab as small records: chat turns per stage, how the answer is read, whether
the last stage is sampled k times and voted. Rendering prompts lives here; running them lives in core.icl."""
from __future__ import annotations

import re
from dataclasses import dataclass

SHOTS = ("shots", "")  # a turn that expands into the exemplars: user "Q: ...", assistant worked answer
ANSWER_FORMAT = 'End with "The answer is N." where N is the final number.'
# Role-setting prompt and in-role reply for a math teacher (Kong et al., NAACL 2024, arithmetic tasks).
ROLE_SETTING = ("From now on, you are an excellent math teacher and always teach your students math problems "
                "correctly. And I am one of your students.")
ROLE_REPLY = ("That's great to hear! As your math teacher, I'll do my best to explain mathematical concepts "
              "correctly so that you can understand them easily. Feel free to ask any math problems or questions "
              "you have, and I'll be glad to assist you.")
KOJIMA_TRIGGER = "Q: {question}\nA: Let's think step by step."
KOJIMA_ANSWER = "Therefore, the answer (arabic numerals) is"


@dataclass(frozen=True)
class Stage:
    name: str
    turns: tuple[tuple[str, str], ...]  # (role, template); templates fill {question} and {stage1}, {stage2}, ...


@dataclass(frozen=True)
class Strategy:
    label: str
    about: str  # one line for the UI: what it does and where it comes from
    stages: tuple[Stage, ...]
    answer_lead: str = ""  # the words the final prompt ends on; put before the output so strict extraction sees them
    voting: bool = False  # self-consistency: the last stage is sampled k times and the answers are majority-voted

    @property
    def uses_shots(self) -> bool:
        return any(SHOTS in stage.turns for stage in self.stages)


def _one(name: str, *turns: tuple[str, str]) -> Stage:
    return Stage(name, tuple(turns))


STRATEGIES: dict[str, Strategy] = {
    "baseline": Strategy(
        "Baseline (zero-shot)", "The course notebook's prompt, answer number right away.",
        (_one("answer", ("user", "Problem: {question}\n\nThe answer number is ")),),
        answer_lead="The answer number is "),
    "role_play": Strategy(
        "Role-play", "A math-teacher role-setting turn and its in-role reply before the question (Kong et al. 2024).",
        (_one("answer", ("user", ROLE_SETTING), ("assistant", ROLE_REPLY), ("user", "{question}\n" + ANSWER_FORMAT)),)),
    "zero_shot_cot": Strategy(
        "Zero-shot CoT", "\"Let's think step by step\", then a second turn extracts the number (Kojima et al. 2022).",
        (_one("reasoning", ("user", KOJIMA_TRIGGER)),
         _one("answer extraction", ("user", KOJIMA_TRIGGER), ("assistant", "{stage1}"), ("user", KOJIMA_ANSWER))),
        answer_lead=KOJIMA_ANSWER + " "),
    "few_shot_cot": Strategy(
        "Few-shot CoT", "Worked exemplars from the train split, never from the evaluated questions (Wei et al. 2022).",
        (_one("answer", SHOTS, ("user", "Q: {question}")),)),
    "least_to_most": Strategy(
        "Least-to-most", "First split the problem into sub-questions, then answer them in order (Zhou et al. 2023).",
        (_one("decompose", ("user", "Break the problem below into the simpler sub-questions that must be answered "
                                    "to solve it, one per line, in the order to answer them. Do not answer them."
                                    "\n\nProblem: {question}")),
         _one("solve", ("user", "Problem: {question}\n\nSub-questions:\n{stage1}\n\nAnswer the sub-questions one "
                                "at a time, in order, using earlier answers in later ones. " + ANSWER_FORMAT)))),
    "generated_knowledge": Strategy(
        "Generated knowledge", "First write the facts and formulas the problem needs, then solve with them "
                               "(Liu et al. 2022).",
        (_one("knowledge", ("user", "List the facts, formulas and quantities needed to solve the problem below, "
                                    "as short bullet points. Do not solve it.\n\nProblem: {question}")),
         _one("answer", ("user", "Knowledge:\n{stage1}\n\nUsing the knowledge above, solve the problem step by "
                                 "step. " + ANSWER_FORMAT + "\n\nProblem: {question}")))),
    "self_consistency": Strategy(
        "Self-consistency", "k sampled step-by-step answers, majority vote over their numbers (Wang et al. 2023).",
        (_one("path", ("user", "Q: {question}\nLet's think step by step. " + ANSWER_FORMAT)),), voting=True),
    "role_few_shot_sc": Strategy(
        "Combo: role-play + few-shot CoT + self-consistency",
        "Aimed at the notebook's >80% bonus: the teacher role, the worked exemplars, then k sampled answers voted.",
        (_one("path", ("user", ROLE_SETTING), ("assistant", ROLE_REPLY), SHOTS, ("user", "Q: {question}")),),
        voting=True),
}


def get_strategies(names) -> list[str]:
    """Validated strategy names in the order given; unknown or no names are a ValueError listing the valid ones."""
    names = [n.strip() for n in (names.split(",") if isinstance(names, str) else list(names or [])) if n and n.strip()]
    if not names:
        raise ValueError(f"no strategy selected: choose at least one of {', '.join(STRATEGIES)}")
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategy {', '.join(map(repr, unknown))}: choose from {', '.join(STRATEGIES)}")
    return list(dict.fromkeys(names))


def worked_solution(answer: str) -> str:
    """A GSM8K answer as an exemplar reply: calculator notes dropped, "#### N" turned into "The answer is N."."""
    steps, _, final = answer.rpartition("####")
    steps = re.sub(r"<<[^>]*>>", "", steps).strip()
    return f"{steps}\nThe answer is {final.strip()}."


def render(strategy: Strategy, stage: int, question: str, shots: list[dict], previous: list[str]) -> list[dict]:
    """Chat messages for one stage of one question; `previous` holds the outputs of the earlier stages."""
    fields = {"question": question, **{f"stage{i + 1}": text for i, text in enumerate(previous)}}
    messages = []
    for role, template in strategy.stages[stage].turns:
        if (role, template) == SHOTS:
            for shot in shots:
                messages += [{"role": "user", "content": f"Q: {shot['question']}"},
                             {"role": "assistant", "content": worked_solution(shot["answer"])}]
        else:
            messages.append({"role": role, "content": template.format(**fields)})
    return messages


def prompt_text(messages: list[dict]) -> str:
    """Messages as readable text for tables and downloads."""
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)
