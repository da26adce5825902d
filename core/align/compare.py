"""After training: a run's answers (base model vs trained adapter, written by the job) scored by the reward model in
the app's model slot once the job has ended, DPO and ORPO side by side (the notebook's Question 9, by measurement),
and the adapter pushed to the Hub."""
from __future__ import annotations

import json
import os
import re

from core.memory import peak_cells
from core.runfolder import RunInfo, list_runs, phase_seconds
from core.runs import RunControl, write_json

NO_ANSWER = "(no answer)"  # an empty generation still gets a score: the reward model's view of saying nothing
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
# Two tables, each narrow enough to read in a page: the notebook's Question 9 (time and memory), then the outcome.
TIME_COLUMNS = ["method", "run", "wall s", "load s", "train s", "answer s", "s/step", "peak allocated GiB",
                "peak reserved GiB"]
OUTCOME_COLUMNS = ["method", "run", "status", "final loss", "answers changed", "base reward", "trained reward",
                   "margin over base"]
COMPARISON_COLUMNS = TIME_COLUMNS + [c for c in OUTCOME_COLUMNS if c not in TIME_COLUMNS]  # comparison_row's keys


def read_answers(run: RunInfo) -> list[dict]:
    """[{prompt, base, trained}] the job wrote after training; a clear error when it wrote none."""
    path = run.folder / "answers.json"
    try:
        answers = json.loads(path.read_text())
    except (OSError, ValueError):
        raise ValueError(f"run {run.run_id} has no readable answers.json ({run.label()}): only finished or "
                         "stopped runs answer the prompts") from None
    if not isinstance(answers, list) or not all(isinstance(a, dict) and "prompt" in a for a in answers):
        raise ValueError(f"run {run.run_id}: answers.json is not a list of {{prompt, base, trained}}")
    return answers


def score_run(run: RunInfo, reward_model: str, control: RunControl | None = None) -> list[dict]:
    """Each prompt's base and trained answers scored together (one batched pass per prompt); scores.json written."""
    from core import reward  # its figures' matplotlib loads only when a run is scored

    rows = []
    for a in read_answers(run):
        cfg = reward.RewardConfig(prompt=a["prompt"], responses=(a.get("base") or NO_ANSWER,
                                                                 a.get("trained") or NO_ANSWER),
                                  labels=("base", "trained"), model_id=reward_model)
        base, trained = reward.run(cfg, control).scores
        rows.append({**a, "base_score": base.score, "trained_score": trained.score})
    write_json(run.folder / "scores.json", {"reward_model": reward_model, "rows": rows})
    return rows


def read_scores(run: RunInfo) -> list[dict]:
    try:
        return json.loads((run.folder / "scores.json").read_text())["rows"]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def changed_answers(run: RunInfo) -> str:
    """"k of n": how many of the run's answers the trained adapter changed from the base model's (greedy decoding: an
    adapter that barely moved changes none, or only flips a near-tied token)."""
    try:
        answers = read_answers(run)
    except ValueError:
        return ""
    return f"{sum(a.get('trained') != a.get('base') for a in answers)} of {len(answers)}"


def same_trained_answers(runs: list[RunInfo]) -> bool:
    """Whether two or more runs wrote the very same trained answers (each from its own adapter: see changed_answers)."""
    try:
        trained = [[a.get("trained") for a in read_answers(r)] for r in runs]
    except ValueError:  # a run that wrote no answers differs from every other
        return False
    return len(trained) > 1 and bool(trained[0]) and all(t == trained[0] for t in trained)


def comparison_row(run: RunInfo) -> dict:
    """The notebook's Question 9 as measured: wall time and its load / train / answer phases (blank for a run from
    before the job recorded them), peak memory allocated and reserved ("CPU" without an accelerator), rewards."""
    s, scores = run.summary, read_scores(run)
    base = _mean([r["base_score"] for r in scores])
    trained = _mean([r["trained_score"] for r in scores])
    phases = phase_seconds(s)
    allocated, reserved = peak_cells(s)
    return {"method": str(run.config.get("method", "")).upper(), "run": run.run_id, "status": run.label(),
            "wall s": s.get("wall_s"), "load s": phases["load"], "train s": phases["train"],
            "answer s": phases["answer"], "s/step": s.get("seconds_per_step"), "peak allocated GiB": allocated,
            "peak reserved GiB": reserved, "final loss": s.get("final_loss"),
            "answers changed": changed_answers(run), "base reward": base, "trained reward": trained,
            "margin over base": None if base is None or trained is None else trained - base}


def latest_per_method() -> list[RunInfo]:
    """The newest run of each method (DPO, then ORPO) whose answers have reward scores: the default pair to compare
    (a run without scores, such as a class-vote run, would leave the reward columns blank)."""
    picked = {}
    for run in list_runs("align"):
        method = run.config.get("method")
        if method and method not in picked and read_scores(run):
            picked[method] = run
    return [picked[m] for m in ("dpo", "orpo") if m in picked]


def push_adapter(run: RunInfo, repo_id: str) -> str:
    """Uploads the run's adapter folder to a private Hub model repo with the token in $HF_TOKEN (read here only,
    never shown or logged). Returns the repo's address."""
    adapter = run.folder / "adapter"
    if not (adapter / "adapter_config.json").is_file():
        raise ValueError(f"run {run.run_id} has no saved adapter ({run.label()})")
    repo_id = (repo_id or "").strip()
    if not REPO_ID.match(repo_id):
        raise ValueError(f"{repo_id[:100]!r} is not a Hub repo id: use 'user-or-org/name'")
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        raise ValueError("the Hub cannot be reached here (offline mode): download the adapter as a zip instead")
    token = os.environ.get("HF_TOKEN")
    if not token:
        raise ValueError("pushing needs a Hugging Face token: add HF_TOKEN as a Space secret (or environment "
                         "variable) and restart the app")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="model", private=True, exist_ok=True)
        api.upload_folder(folder_path=str(adapter), repo_id=repo_id, repo_type="model",
                          commit_message=f"Alignment Lab: {run.config.get('method', 'LoRA')} adapter from run "
                                         f"{run.run_id}")
    except Exception as exc:  # no network, a bad token, no rights to the repo: said, with the token blanked
        reason = f"{type(exc).__name__}: {exc}".replace(token, "hf_***")[:500]
        raise ValueError(f"could not push to {repo_id}: {reason}") from None
    return f"https://huggingface.co/{repo_id}"
