"""Score presses merged across students (issue 25): concurrent requests for the same reward model (or judge) become
one pass through the model slot (core.batching); every student's answers are scored in it and handed back as theirs."""
from __future__ import annotations

from dataclasses import dataclass

from core.batching import Batcher, Entry
from core.generation import auto_batch_size
from core.memory import free_accelerator_bytes
from core.reward import judge, sequence_rm

CPU_CONVERSATIONS = 16  # (prompt, answer) conversations per forward pass on a CPU
TEMPLATE_ROOM = 128  # tokens of chat template (the judge's rating question is longest) around prompt and answer


@dataclass(frozen=True)
class ScoreRequest:
    """One Score press: a prompt's answers and the token limit its page set."""
    prompt: str
    responses: tuple[str, ...]
    max_tokens: int
    judge: bool  # scored by the lite LLM judge (an LM in the slot), else by a sequence-classification reward model


def score_pass(model, entries: list[Entry]) -> list:
    """Every entry's answers scored by `model` (a RewardModel, or the judge's LM): entries that share a token limit
    go through the same forward passes, as many conversations each as fit. One outcome per entry, in order:
    (its ResponseScores in its answers' order, its token limit)."""
    outcomes: list = [None] * len(entries)
    by_limit: dict[int, list[int]] = {}
    for i, entry in enumerate(entries):
        by_limit.setdefault(sequence_rm.token_limit(model.model, entry.item.max_tokens), []).append(i)
    for limit, mine in by_limit.items():
        conversations = [(entries[i].item.prompt, r) for i in mine for r in entries[i].item.responses]
        size = conversations_per_forward(model, conversations, limit, entries[0].item.judge)
        scores = []
        for first in range(0, len(conversations), size):
            part = conversations[first:first + size]
            scores += (judge.score_conversations if entries[0].item.judge else sequence_rm.score_conversations)(
                model, part, limit)
        for i in mine:
            n = len(entries[i].item.responses)
            outcomes[i], scores = (scores[:n], limit), scores[n:]
    return outcomes


def conversations_per_forward(model, conversations: list[tuple[str, str]], limit: int, is_judge: bool) -> int:
    """As many conversations as the free accelerator memory holds at the longest one's length (x 5 questions each
    for the judge), the estimate generation uses; CPU_CONVERSATIONS on a CPU."""
    if model.model.device.type != "cuda":
        return CPU_CONVERSATIONS
    per = len(judge.ATTRIBUTES) if is_judge else 1
    longest = max(len(model.tokenizer(p + r, add_special_tokens=False).input_ids) for p, r in conversations)
    rows = auto_batch_size(model.model.config, min(longest + TEMPLATE_ROOM, limit), 0, len(conversations) * per,
                           free_accelerator_bytes())
    return max(1, rows // per)


SCORING = Batcher("reward", score_pass)
