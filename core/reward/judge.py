"""The lite profile's honest stand-in for a reward model: a small instruct LLM asked to rate each attribute 1-5.
Its next-token probabilities over the digits give each attribute a rating distribution (expected rating and
quantiles). It is an LLM judge, not a trained reward model, and it has no gate: the final score is a plain mean."""
from __future__ import annotations

from core.generation import chat_text
from core.reward.sequence_rm import ATTRIBUTES, ResponseScore, fit_prompt, quantile_levels

JUDGE_PREFIX = "judge:"
RATINGS = (1, 2, 3, 4, 5)
DEFINITIONS = {
    "helpfulness": "how well it answers the question overall",
    "correctness": "whether its facts are true and complete",
    "coherence": "how clear and consistent it is",
    "complexity": "how much expertise it takes to write",
    "verbosity": "how much detail it gives relative to what was asked",
}
TEMPLATE = ("Question: {prompt}\n\nAnswer: {response}\n\nRate the answer's {attribute} ({definition}) on a scale "
            "from 1 (very low) to 5 (very high). Reply with one digit.")


def judge_model_id(reward_model: str) -> str | None:
    """"judge:<generator id>" -> the generator id; None for a real reward model id."""
    return reward_model.removeprefix(JUDGE_PREFIX) if reward_model.startswith(JUDGE_PREFIX) else None


def digit_ids(tokenizer) -> list[int]:
    ids = [tokenizer(str(k), add_special_tokens=False).input_ids for k in RATINGS]
    if any(len(i) != 1 for i in ids):
        raise ValueError("this judge's tokenizer splits the digits 1-5 into several tokens: pick another judge model")
    return [i[0] for i in ids]


def discrete_quantiles(probs: list[float], levels: list[float]) -> list[float]:
    """Quantiles of a distribution over the ratings: the smallest rating whose cumulative probability reaches
    each level."""
    out = []
    for level in levels:
        cumulative = 0.0
        for rating, p in zip(RATINGS, probs):
            cumulative += p
            if cumulative >= level - 1e-9:
                break
        out.append(float(rating))
    return out


def _encode(tokenizer, prompt: str, response: str, attribute: str, max_tokens: int) -> tuple[list[int], bool]:
    def render(text: str) -> list[int]:
        message = TEMPLATE.format(prompt=text, response=response, attribute=attribute,
                                  definition=DEFINITIONS[attribute])
        return tokenizer(chat_text(tokenizer, message), add_special_tokens=False).input_ids
    return fit_prompt(render, tokenizer, prompt, max_tokens)


def _rating_probs(lm, rows: list[list[int]]):
    """P(rating = 1..5) for each row from the next-token logits, renormalized over the five digits: [rows, 5]."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), lm.tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):  # left padding: every row's next token sits in the last column
        ids[i, width - len(row):] = torch.tensor(row)
        mask[i, width - len(row):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # so a padded row sees the positions it would alone
    with torch.inference_mode():
        logits = lm.model(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device),
                          position_ids=positions.to(lm.device), logits_to_keep=1).logits[:, -1].float()
    return torch.softmax(logits[:, digit_ids(lm.tokenizer)], dim=-1).cpu()


def score_conversations(lm, conversations: list[tuple[str, str]], max_tokens: int) -> list[ResponseScore]:
    """Every (conversation, attribute) question in one forward pass; per (prompt, response): expected rating per
    attribute, their quantiles, and the plain mean of the expected ratings as the final score."""
    levels = quantile_levels(19)
    encoded = [_encode(lm.tokenizer, p, r, a, max_tokens) for p, r in conversations for a in ATTRIBUTES]
    probs = _rating_probs(lm, [ids for ids, _ in encoded]).view(len(conversations), len(ATTRIBUTES), len(RATINGS))
    results = []
    for i, per_attribute in enumerate(probs.tolist()):
        expected = [sum(k * p for k, p in zip(RATINGS, dist)) for dist in per_attribute]
        quantiles = [discrete_quantiles(dist, levels) for dist in per_attribute]
        mine = encoded[i * len(ATTRIBUTES):(i + 1) * len(ATTRIBUTES)]
        results.append(ResponseScore(
            score=sum(expected) / len(expected), rewards=expected, gating=None,
            score_quantiles=[sum(col) / len(col) for col in zip(*quantiles)], attribute_quantiles=quantiles,
            rating_probs=per_attribute, n_tokens=max(len(ids) for ids, _ in mine),
            truncated=any(t for _, t in mine)))
    return results


def score(lm, prompt: str, responses: list[str], max_tokens: int) -> list[ResponseScore]:
    """Every response to one prompt, all attributes in one forward pass."""
    return score_conversations(lm, [(prompt, r) for r in responses], max_tokens)
