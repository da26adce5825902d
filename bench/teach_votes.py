"""The class-votes flow of `python -m bench teach`: two feedback sessions answered by the generator (training and
held-out prompts), a simulated class whose majority votes for the cool sample's answer style, the quick preset trained
on the exported votes, and the trained adapter's implicit DPO reward margin on the held-out voted pairs."""
from __future__ import annotations

import json
from pathlib import Path

from bench.teach_figures import mean_band, verdict

VOTERS = 5  # a small class: 4 vote for the voted style, 1 against it, on every pair
AGAINST = 1
TRAIN_PROMPTS, HELDOUT_PROMPTS = 10, 6  # core.feedback.MAX_PROMPTS is 10 per session
# Answers per pair on a CPU: the tab's 128 tokens took over 14 minutes for 10 prompts on the loaded 2-core machine
# without finishing one session; on CUDA the tab's default.
CPU_ANSWER_TOKENS = 48


def prompts(dataset: str) -> list[str]:
    """Distinct prompts of the preference data, in file order."""
    from core.data import load_split

    seen = []
    for row in load_split(dataset, "train"):
        if row["prompt"] not in seen and len(row["prompt"]) < 400:
            seen.append(row["prompt"])
    return seen


def voted_session(name: str, texts: list[str], profile, cuda: bool) -> str:
    """A session of `texts` answered twice (cool and hot sample), VOTERS votes per pair with the majority for the
    cool sample; returns the exported preferences.jsonl."""
    from core import feedback

    length = {} if cuda else {"max_new_tokens": CPU_ANSWER_TOKENS}
    cfg = feedback.SessionConfig(name=name, prompts=tuple(texts), requester="teacher", generator=profile.generator,
                                 no_repeat_ngram_size=profile.no_repeat_ngram_size, **length)
    session = feedback.create_session(cfg)
    cool = feedback.SAMPLINGS[0]
    for pair in session.pairs:
        voted, other = ("A", "B") if tuple(pair.a_from) == tuple(cool) else ("B", "A")
        for k in range(VOTERS):
            feedback.vote(name, pair.id, other if k < AGAINST else voted, f"student-{k}")
    return feedback.export_preferences(name).path


def implicit_margins(cfg, adapter: Path, rows: list[dict]) -> list[float]:
    """beta * ((log pi(chosen) - log ref(chosen)) - (log pi(rejected) - log ref(rejected))) per pair, the reference
    being the adapter switched off (as trl's DPO with peft), answers cut at cfg.max_length tokens with the prompt."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from core import align, loaders

    tokenizer = loaders.load_tokenizer(cfg.model_id)
    base = AutoModelForCausalLM.from_pretrained(loaders.resolve_local(cfg.model_id), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(adapter)).to(loaders.device()).eval()

    def logp(prompt: str, answer: str) -> float:
        p = tokenizer(prompt, add_special_tokens=False).input_ids
        a = tokenizer(answer, add_special_tokens=False).input_ids[:max(cfg.max_length - len(p), 1)]
        ids = torch.tensor([p + a], device=model.device)
        with torch.no_grad():
            logits = model(ids).logits[0, len(p) - 1:-1].float()
        return logits.log_softmax(-1).gather(1, ids[0, len(p):, None]).sum().item()

    margins = []
    for row in rows:
        pair = align.format_pair(row, tokenizer)
        policy = [logp(pair["prompt"], pair[k]) for k in ("chosen", "rejected")]
        with model.disable_adapter():
            ref = [logp(pair["prompt"], pair[k]) for k in ("chosen", "rejected")]
        margins.append(cfg.beta * ((policy[0] - ref[0]) - (policy[1] - ref[1])))
    return margins


def run_votes(claim, profile, args, work: Path, run_align) -> dict:
    """Sessions, votes, export, the quick preset trained on the votes (as the tab's Start with the export picked),
    then the held-out margins."""
    texts = prompts(profile.preferences)
    if len(texts) < TRAIN_PROMPTS + HELDOUT_PROMPTS:
        raise ValueError(f"{profile.preferences} has {len(texts)} usable prompts, the votes flow needs "
                         f"{TRAIN_PROMPTS + HELDOUT_PROMPTS}")
    cuda = args.device == "cuda"
    train_path = voted_session("teach-train", texts[:TRAIN_PROMPTS], profile, cuda)
    heldout_path = voted_session("teach-heldout", texts[TRAIN_PROMPTS:TRAIN_PROMPTS + HELDOUT_PROMPTS], profile, cuda)
    trained = run_align(claim, profile, args, work, dataset=train_path)
    heldout = [json.loads(line) for line in Path(heldout_path).read_text().splitlines() if line.strip()]
    margins = implicit_margins(trained["cfg"], Path(trained["run_dir"]) / "adapter", heldout)
    margin, low, high = mean_band(margins)
    return {**trained, "margin_heldout": margin, "margin_low": low, "margin_high": high,
            "heldout_pairs": len(margins), "heldout_accuracy": sum(m > 0 for m in margins) / len(margins),
            "train_pairs": trained["cfg"].pairs, "verdict": verdict("rises", low, high)}
