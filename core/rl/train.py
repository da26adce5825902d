"""The RL summarizer's one entry point: `RlConfig` (defaults: the course notebook's PPO settings), named presets,
and `train(cfg, recorder)`, which runs our PPO or trl's GRPO on the news articles with ROUGE as the reward and
writes the run folder (config.json first, metrics, samples, checkpoints, adapter/, before_after.json)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean

from core import loaders
from core.profiles import FULL
from core.rl.articles import load_articles
from core.rl.rewards import rouge_reward
from core.rl.rollout import FixedShapeSampler
from core.runfolder import RunRecorder, last_checkpoint, last_per_step, read_lines
from core.training import set_cpu_threads

ALGOS = ("ppo", "grpo")


@dataclass(frozen=True)
class RlConfig:
    """One RL run. PPO fields follow trl 0.11's PPOConfig as the notebook set it; GRPO uses the shared ones
    (batch_size completions per step, learning rate, temperature, lengths, cliprange as epsilon)."""
    algo: str = "ppo"  # ppo (ours) | grpo (trl)
    policy: str = FULL.summarizer
    news: str = FULL.news
    n_articles: int = 400  # the notebook's loop stopped after ~100 batches of 4 validation articles
    max_prompt_tokens: int = 512
    max_new_tokens: int = 128
    temperature: float = 1.0  # pure sampling: top_k 0, top_p 1.0
    learning_rate: float = 1.41e-5
    batch_size: int = 4
    mini_batch_size: int = 4
    ppo_epochs: int = 4
    vf_coef: float = 0.1
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    gamma: float = 1.0
    lam: float = 0.95
    kl: str = "adaptive"  # adaptive | fixed
    init_kl_coef: float = 0.2
    target_kl: float = 6.0
    horizon: int = 10000
    max_grad_norm: float = 1.0  # 0 = no clipping (trl 0.11's default)
    missing_eos_penalty: float = 0.0  # subtracted from the score of a response that never ended
    score_scaling: str = "none"  # none | std (divide by the running std) | norm (also subtract the running mean)
    score_clip: float = 0.0  # 0 = off
    steps: int = 100
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    num_generations: int = 4  # GRPO: summaries per article
    grpo_beta: float = 0.04  # GRPO's KL coefficient (> 0, so trl computes and logs kl)
    save_steps: int = 25
    seed: int = 0
    eval_articles: int = 4  # articles in before_after.json
    samples_per_step: int = 2  # lines per step in samples.jsonl
    bf16: bool = True  # CUDA only: bf16 autocast; a CPU always runs fp32
    static_cache: bool = True  # CUDA only: a static KV cache for generation
    decode_compiler: str = "cuda-graph"  # CUDA, static cache: how PPO's rollout decode step is recorded (rollout.py)

    def __post_init__(self):
        for name, value, choices in (("algo", self.algo, ALGOS), ("kl", self.kl, ("adaptive", "fixed")),
                                     ("score_scaling", self.score_scaling, ("none", "std", "norm")),
                                     ("decode_compiler", self.decode_compiler, FixedShapeSampler.COMPILERS)):
            if value not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        for name in ("policy", "news"):
            if not str(getattr(self, name)).strip():
                raise ValueError(f"{name} is empty: give a model/dataset id or a local path")
        self._check_positive()
        self._check_batches()
        if not (0 < self.gamma <= 1 and 0 <= self.lam <= 1):
            raise ValueError(f"gamma must be in (0, 1] and lam in [0, 1], got {self.gamma} and {self.lam}")
        if self.kl == "adaptive" and self.init_kl_coef <= 0:
            raise ValueError("the adaptive KL controller multiplies beta, so init_kl_coef must be > 0: "
                             "use kl='fixed' with init_kl_coef 0 for no KL penalty")

    def _check_positive(self) -> None:
        positive = ("steps", "n_articles", "batch_size", "mini_batch_size", "ppo_epochs", "learning_rate",
                    "temperature", "max_new_tokens", "max_prompt_tokens", "cliprange", "cliprange_value",
                    "target_kl", "horizon", "save_steps", "lora_r", "lora_alpha")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        non_negative = ("vf_coef", "init_kl_coef", "max_grad_norm", "missing_eos_penalty", "score_clip",
                        "grpo_beta", "eval_articles", "samples_per_step")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def _check_batches(self) -> None:
        if self.batch_size % self.mini_batch_size:
            raise ValueError(f"batch_size ({self.batch_size}) must be divisible by mini_batch_size "
                             f"({self.mini_batch_size})")
        if self.n_articles < self.batch_size:
            raise ValueError(f"n_articles ({self.n_articles}) must be at least batch_size ({self.batch_size})")
        if self.algo == "grpo" and (self.num_generations < 2 or self.batch_size % self.num_generations):
            raise ValueError(f"GRPO needs num_generations >= 2 dividing batch_size ({self.batch_size}), got "
                             f"{self.num_generations}")


@dataclass(frozen=True)
class Preset:
    shows: str  # what a run with it teaches
    overrides: dict


PRESETS = {
    "lite": Preset("sized for a 2-core laptop: ~128-token articles, 48 new tokens, LoRA, 2 PPO epochs",
                   dict(max_prompt_tokens=128, max_new_tokens=48, lora=True, ppo_epochs=2, learning_rate=1e-4,
                        n_articles=20, steps=20, save_steps=5, eval_articles=2)),
    "kl-too-strong": Preset("a heavy fixed KL penalty outweighs ROUGE: the reward falls (the notebook's plot B)",
                            dict(kl="fixed", init_kl_coef=2.0)),
    "no-kl": Preset("beta 0: the reward rises while the text drifts away from fluent summaries (reward hacking)",
                    dict(kl="fixed", init_kl_coef=0.0)),
    "high-vf-coef": Preset("the notebook's bonus question: the value loss dominates the shared update",
                           dict(vf_coef=1.0)),
}


def preset_config(names: list[str], **overrides) -> RlConfig:
    """RlConfig from presets applied in order, then `overrides`; an unknown name lists the valid ones."""
    values = {}
    for name in names:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
        values.update(PRESETS[name].overrides)
    return RlConfig(**{**values, **overrides})


def config_from_file(config: dict) -> RlConfig:
    """The RlConfig a run's config.json holds (extra keys such as max_steps ignored)."""
    return RlConfig(**{f.name: config[f.name] for f in dataclasses.fields(RlConfig) if f.name in config})


def curve_figures(run_dir: Path) -> dict:
    """reward at the first step, the mean over the last 5 steps, and the last KL, from metrics.jsonl (a step
    logged again after a resume counts once, its last line)."""
    lines = last_per_step(read_lines(Path(run_dir) / "metrics.jsonl"), "reward")
    if not lines:
        return {}
    return {"reward_start": lines[0]["reward"], "reward_final": fmean(m["reward"] for m in lines[-5:]),
            "kl_final": lines[-1].get("kl")}


def train(cfg: RlConfig, recorder: RunRecorder, resume: bool = False, reward_fn=rouge_reward) -> dict:
    """Trains one run into recorder.run_dir (resume: from its last checkpoint, same config). Returns the summary
    figures: status (finished | stopped), reason, steps_done, seconds_per_step, reward_start/final, kl_final and
    the mean ROUGE-1 of the greedy summaries before and after."""
    from core.rl.before_after import write_after, write_before

    threads = set_cpu_threads(loaders.device())
    recorder.write_config({**dataclasses.asdict(cfg), "max_steps": cfg.steps, **threads})
    checkpoint = last_checkpoint(recorder.run_dir) if resume else None
    rows = load_articles(cfg.news, cfg.n_articles)
    if len(rows) < cfg.batch_size:
        raise ValueError(f"{cfg.news} has {len(rows)} articles, fewer than batch_size ({cfg.batch_size})")
    writes = recorder.writes  # under accelerate launch only rank 0 writes the summaries before and after
    articles = write_before(recorder.run_dir, cfg, rows[:cfg.eval_articles]) if writes else []
    if cfg.algo == "ppo":
        from core.rl.ppo_trainer import PpoTrainer

        figures = PpoTrainer(cfg, rows, reward_fn, recorder, checkpoint).train()
    else:
        from core.rl.grpo import train_grpo  # trl: imported only for GRPO

        figures = train_grpo(cfg, rows, reward_fn, recorder, checkpoint)
    means = write_after(recorder.run_dir, cfg, rows[:cfg.eval_articles], articles) if writes else {}
    rouge = {f"{when}_rouge1": scores["rouge1"] for when, scores in means.items() if scores}
    return {"algo": cfg.algo, "run_dir": str(recorder.run_dir), "max_steps": cfg.steps, "articles": len(rows),
            **figures, **curve_figures(recorder.run_dir), **rouge}
