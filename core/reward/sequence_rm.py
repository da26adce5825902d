"""Sequence-classification reward models: loading (remote code only for an allow-list, the QRM compatibility step)
and batched scoring of one prompt's responses. QRM-shaped models give attribute rewards, gates and quantiles;
any other model gives its single scalar. Keeps nothing resident: core.models owns that."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from core.loaders import device, split_revision
from core.profiles import QRM_REVISION

ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")  # QRM-v2's HelpSteer order
# The only (model id, revision) pairs whose own Python code we agree to run.
ALLOWED_REMOTE_CODE = {("nicolinho/QRM-Llama3.1-8B-v2", QRM_REVISION)}


@dataclass
class ResponseScore:
    """One response's scores. `score_quantiles` are quantiles of the final score's distribution (for QRM their
    mean is the score; for the judge's discrete ratings about so); `attribute_quantiles` is [attribute][level].
    Fields a scorer cannot give stay None."""
    score: float
    rewards: list[float] | None = None
    gating: list[float] | None = None
    score_quantiles: list[float] | None = None
    attribute_quantiles: list[list[float]] | None = None
    rating_probs: list[list[float]] | None = None  # LLM judge only: [attribute][P(rating = 1..5)]
    n_tokens: int = 0
    truncated: bool = False


@dataclass
class RewardModel:
    model: Any
    tokenizer: Any
    model_id: str
    device: str
    pad_id: int | None  # the id the model's pooling treats as padding (None: one sequence per forward pass)


def quantile_levels(n: int) -> list[float]:
    """QRM's levels 0.05, 0.10, ..., 0.95 for n = 19: evenly spaced, excluding 0 and 1."""
    return [round((k + 1) / (n + 1), 6) for k in range(n)]


def attribute_names(n: int) -> list[str]:
    return list(ATTRIBUTES) if n == len(ATTRIBUTES) else [f"attribute {i + 1}" for i in range(n)]


def apply_qrm_compat() -> None:
    """QRM's remote code imports LLAMA_INPUTS_DOCSTRING, which transformers removed in 4.52: define it again."""
    import transformers.models.llama.modeling_llama as llama

    if not hasattr(llama, "LLAMA_INPUTS_DOCSTRING"):
        llama.LLAMA_INPUTS_DOCSTRING = ""


def remote_code_allowed(name: str, revision: str | None) -> bool:
    """False when the model needs no code of its own; True for allow-listed ids; ValueError for any other id
    whose config asks for remote code (transformers would otherwise fall back to a random-headed class)."""
    from transformers import PretrainedConfig

    config, _ = PretrainedConfig.get_config_dict(name, revision=revision)
    if not config.get("auto_map"):
        return False
    if (name, revision) in ALLOWED_REMOTE_CODE:
        return True
    allowed = ", ".join(f"{n}@{r}" for n, r in sorted(ALLOWED_REMOTE_CODE))
    raise ValueError(f"{name}{'@' + revision if revision else ''} needs its own Python code (trust_remote_code), "
                     f"which this app runs only for: {allowed}. Pick one of those or a model transformers "
                     "supports natively.")


def load_reward_model(model_id: str) -> RewardModel:
    """An AutoModelForSequenceClassification in eval mode (bf16 + sdpa on CUDA) and its tokenizer, right-padded."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    name, revision = split_revision(model_id)
    trust = remote_code_allowed(name, revision)
    if trust:
        apply_qrm_compat()
    dev = device()
    model = AutoModelForSequenceClassification.from_pretrained(
        name, revision=revision, trust_remote_code=trust, attn_implementation="sdpa",
        dtype=torch.bfloat16 if dev == "cuda" else torch.float32, device_map=dev).eval()  # eval: BatchNorm in gates
    tokenizer = AutoTokenizer.from_pretrained(name, revision=revision)
    tokenizer.padding_side = "right"
    # Padding must use the id the model's pooling looks for, which it reads from its config.
    return RewardModel(model, tokenizer, model_id, dev, model.config.pad_token_id)


def token_limit(model, max_tokens: int) -> int:
    """max_tokens, or the model's context length when that is shorter."""
    return min(max_tokens, getattr(model.config, "max_position_embeddings", None) or max_tokens)


def fit_prompt(render: Callable[[str], list[int]], tokenizer, prompt: str, max_tokens: int) -> tuple[list[int], bool]:
    """Token ids of `render(prompt)`, cutting the prompt from its start until they fit in max_tokens. The template
    (and so the assistant header) and the answer stay whole. Returns (ids, truncated)."""
    ids = render(prompt)
    if len(ids) <= max_tokens:
        return ids, False
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    keep = len(prompt_ids) - (len(ids) - max_tokens)
    for _ in range(8):  # re-tokenizing a cut prompt can shift a token or two; a few rounds settle it
        if keep <= 0:
            break
        ids = render(tokenizer.decode(prompt_ids[-keep:]))
        if len(ids) <= max_tokens:
            return ids, True
        keep -= len(ids) - max_tokens
    raise ValueError(f"the answer alone takes {len(render(''))} tokens with the chat template, more than the "
                     f"limit of {max_tokens}: shorten the answer or raise max tokens")


def encode(tokenizer, prompt: str, response: str, max_tokens: int) -> tuple[list[int], bool]:
    """The user/assistant conversation in the model's chat template, as QRM expects it."""
    def render(text: str) -> list[int]:
        messages = [{"role": "user", "content": text}, {"role": "assistant", "content": response}]
        if tokenizer.chat_template is None:
            return tokenizer(f"{text}\n\n{response}").input_ids
        return tokenizer(tokenizer.apply_chat_template(messages, tokenize=False),
                         add_special_tokens=False).input_ids
    return fit_prompt(render, tokenizer, prompt, max_tokens)


def _padded(rows: list[list[int]], pad_id: int, dev: str):
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):  # right padding: QRM pools the token before the first pad
        ids[i, :len(row)] = torch.tensor(row)
        mask[i, :len(row)] = 1
    return ids.to(dev), mask.to(dev)


def _forward(rm: RewardModel, rows: list[list[int]]) -> list[ResponseScore]:
    import torch

    ids, mask = _padded(rows, 0 if rm.pad_id is None else rm.pad_id, rm.device)
    with torch.inference_mode():
        out = rm.model(input_ids=ids, attention_mask=mask)
        if getattr(out, "reward_quantiles", None) is None:
            logits = out.logits.float()
            if logits.shape[-1] != 1:
                raise ValueError(f"{rm.model_id} outputs {logits.shape[-1]} logits per sequence, not one reward: "
                                 "use a reward model (a single scalar output) or a QRM-style model")
            return [ResponseScore(score=float(v)) for v in logits[:, 0]]
        per_attribute = rm.model.regression_layer(out.hidden_state).float()
        per_attribute = per_attribute.view(len(rows), out.rewards.shape[-1], -1)
    # QRM averages the gate-weighted attribute quantiles over attributes (mean x n = score): x n puts
    # them on the score's scale, i.e. the quantiles of sum(gate * attribute reward).
    n = out.rewards.shape[-1]
    score_quantiles = out.reward_quantiles.float() * n
    return [ResponseScore(score=float(out.score[i].float().reshape(-1)[0]), rewards=out.rewards[i].float().tolist(),
                          gating=out.gating_output[i].float().tolist(), score_quantiles=score_quantiles[i].tolist(),
                          attribute_quantiles=per_attribute[i].tolist()) for i in range(len(rows))]


def score_conversations(rm: RewardModel, conversations: list[tuple[str, str]], max_tokens: int) -> list[ResponseScore]:
    """(prompt, response) pairs scored in one forward pass (one pass each if the model has no pad id)."""
    encoded = [encode(rm.tokenizer, prompt, response, max_tokens) for prompt, response in conversations]
    rows = [ids for ids, _ in encoded]
    if rm.pad_id is None:
        scores = [s for row in rows for s in _forward(rm, [row])]
    else:
        scores = _forward(rm, rows)
    for s, (ids, truncated) in zip(scores, encoded):
        s.n_tokens, s.truncated = len(ids), truncated
    return scores


def score(rm: RewardModel, prompt: str, responses: list[str], max_tokens: int) -> list[ResponseScore]:
    """Every response to one prompt, batched in one forward pass."""
    return score_conversations(rm, [(prompt, r) for r in responses], max_tokens)
