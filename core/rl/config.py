"""The RL run's settings: `RlConfig` (defaults: the course notebook's PPO settings), its checks, and the presets the
tab and the CLI offer. Holds no model code; core.rl.job turns a config into a run."""
from __future__ import annotations

from dataclasses import dataclass

from core.presets import Preset, preset_values
from core.profiles import FULL
from core.rl.rollout import FixedShapeSampler

ALGOS = ("ppo", "grpo")


@dataclass(frozen=True)
class RlConfig:
    """One RL run. PPO fields follow trl 0.11's PPOConfig as the notebook set it; GRPO uses the shared ones
    (batch_size completions per step, learning rate, temperature, lengths, cliprange as epsilon)."""
    algo: str = "ppo"  # ppo (ours) | grpo (trl)
    policy: str = FULL.summarizer  # the summarizer to train (hub id, folder or pypi:<package>/<file>)
    news: str = FULL.news  # articles with highlights (cnn_dailymail's schema)
    n_articles: int = 400  # the notebook's loop stopped after ~100 batches of 4 validation articles
    shuffle_articles: bool = False  # draw the articles from the whole split shuffled with the seed (the notebook's
    # shuffled DataLoader); off: the split's first n_articles rows
    max_prompt_tokens: int = 512  # article tokens kept in the prompt (the notebook truncates at 512)
    max_new_tokens: int = 128  # tokens per sampled summary
    temperature: float = 1.0  # pure sampling: top_k 0, top_p 1.0
    learning_rate: float = 1.41e-5  # Adam step size (trl 0.11's default); 0: the policy never changes
    batch_size: int = 4  # articles (PPO) or completions (GRPO) per step
    mini_batch_size: int = 4  # PPO: samples per gradient step within a batch
    ppo_epochs: int = 4  # PPO: passes over each batch
    vf_coef: float = 0.1  # PPO: weight of the value loss in the shared loss
    cliprange: float = 0.2  # PPO: policy ratio clip (GRPO: epsilon)
    cliprange_value: float = 0.2  # PPO: value prediction clip
    gamma: float = 1.0  # PPO: discount per token
    lam: float = 0.95  # PPO: GAE lambda
    kl: str = "adaptive"  # adaptive | fixed
    init_kl_coef: float = 0.2  # PPO: KL penalty coefficient to the reference at the start
    target_kl: float = 6.0  # PPO, adaptive KL: the KL the controller steers to
    horizon: int = 10000  # PPO, adaptive KL: how slowly the coefficient adapts
    max_grad_norm: float = 1.0  # 0 = no clipping (trl 0.11's default)
    missing_eos_penalty: float = 0.0  # subtracted from the score of a response that never ended
    score_scaling: str = "none"  # none | std (divide by the running std) | norm (also subtract the running mean)
    score_clip: float = 0.0  # 0 = off
    max_steps: int = 100  # training steps, each on one batch (batch_size articles; GRPO: batch_size completions)
    lora: bool = False  # train a LoRA adapter instead of every weight
    lora_r: int = 16  # LoRA rank (with --lora)
    lora_alpha: int = 32  # LoRA scaling numerator (with --lora)
    num_generations: int = 4  # GRPO: summaries per article
    grpo_beta: float = 0.04  # GRPO's KL coefficient (> 0, so trl computes and logs kl)
    save_steps: int = 25  # a resumable checkpoint every this many steps
    seed: int = 0  # article order, sampling and initialisation
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
        positive = ("max_steps", "n_articles", "batch_size", "mini_batch_size", "ppo_epochs", "temperature",
                    "max_new_tokens", "max_prompt_tokens", "cliprange", "cliprange_value", "target_kl", "horizon",
                    "save_steps", "lora_r", "lora_alpha")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        non_negative = ("learning_rate", "vf_coef", "init_kl_coef", "max_grad_norm", "missing_eos_penalty",
                        "score_clip", "grpo_beta", "eval_articles", "samples_per_step")
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


# The notebook's PPO (seeds/002, Exercise 2): its PPOConfig (learning_rate, batch_size, mini_batch_size, ppo_epochs)
# and trl 0.11's defaults for the rest (no gradient clipping, fp32, adaptive KL from 0.2 to 6 over 10000), articles cut
# at max_length=512, output_max_length = 128, a shuffled DataLoader over the validation split, the loop's 101 steps.
NOTEBOOK = dict(learning_rate=1.41e-5, batch_size=4, mini_batch_size=4, ppo_epochs=4, vf_coef=0.1, cliprange=0.2,
                cliprange_value=0.2, gamma=1.0, lam=0.95, kl="adaptive", init_kl_coef=0.2, target_kl=6.0,
                horizon=10000, max_grad_norm=0.0, score_scaling="none", score_clip=0.0, missing_eos_penalty=0.0,
                temperature=1.0, max_prompt_tokens=512, max_new_tokens=128, shuffle_articles=True, n_articles=404,
                max_steps=101, lora=False, bf16=False, static_cache=False)
FAST_PATH = "bf16 autocast, a static KV cache, gradients clipped at 1.0, the split's first 400 articles, 100 steps"
PRESETS = {
    "lite": Preset("Lite", "sized for a 2-core laptop: ~128-token articles, 48 new tokens, LoRA, 2 PPO epochs",
                   dict(max_prompt_tokens=128, max_new_tokens=48, lora=True, ppo_epochs=2, learning_rate=1e-4,
                        n_articles=20, max_steps=20, save_steps=5, eval_articles=2),
                   departs="128-token articles, 48 new tokens, LoRA, 2 PPO epochs, learning rate 1e-4, 20 articles"),
    # bench teach, lite, 20 steps (bench/RESULTS.md): reward slope +0.0001 [-0.0039, +0.0040] per step: no fall yet.
    "kl-too-strong": Preset("KL too strong",
                            "a heavy fixed KL penalty outweighs ROUGE: the reward falls (the notebook's plot B); in "
                            "lite, 20 steps leave the reward flat within its noise, no fall yet",
                            dict(kl="fixed", init_kl_coef=2.0), departs=f"a fixed KL coefficient of 2.0; {FAST_PATH}"),
    # bench teach, lite, 20 steps (bench/RESULTS.md): reward slope -0.0025 [-0.0062, +0.0012] per step, KL 0.55-1.36 over the
    # last 6 steps (the healthy run's stayed below 0.62).
    "no-kl": Preset("No KL",
                    "beta 0: the reward rises while the text drifts away from fluent summaries (reward hacking); in "
                    "lite, 20 steps leave the reward flat within its noise while the KL grows to about 1",
                    dict(kl="fixed", init_kl_coef=0.0), departs=f"no KL penalty; {FAST_PATH}"),
    # bench teach, lite, 4 steps (bench/RESULTS.md): the value loss's share of the shared loss 0.50 here, 0.10 in the
    # healthy run (vf_coef 0.1) on the same articles: it grows fivefold but only matches the policy loss.
    "high-vf-coef": Preset("High vf_coef", "the notebook's bonus question: vf_coef 10x the default makes the value "
                           "loss a far larger part of the shared update (in lite it grew from a tenth to half of it, "
                           "as large as the policy loss, not dominating)",
                           dict(vf_coef=1.0), departs=f"vf_coef 1.0; {FAST_PATH}"),
    # bench teach, lite, the full 20 steps (bench/RESULTS.md): reward slope +0.0004 [-0.0035, +0.0043] per step, KL
    # -0.2..0.6 against the target 6: within lite's 20 steps the rise does not clear the batch-to-batch noise.
    "healthy": Preset("Healthy run (fast path)", "the reward rises slowly and noisily while the adaptive controller "
                      "keeps the KL to the starting model near its target (the notebook's plot C); in lite, 20 steps "
                      "leave the reward flat within its noise and the KL far below the target", {},
                      departs=FAST_PATH),
    "no-learning": Preset("No learning", "learning rate 0, the untrained policy: the reward spreads over its range "
                          "and stays flat (the notebook's plot A)", dict(learning_rate=0.0),
                          departs=f"learning rate 0; {FAST_PATH}"),
    "notebook": Preset("Course notebook", "the notebook's PPO run: its PPOConfig on trl 0.11's defaults (fp32, no "
                       "gradient clipping), 512-token articles from the shuffled validation split, 101 steps",
                       NOTEBOOK),
}

def departs_from_notebook(names: list[str]) -> str:
    """How a run with the presets `names` (applied in order) departs from the notebook's, in one line; "" for none.
    The notebook's preset sets every field the notebook has, so it undoes the departures of the presets before it."""
    lines = []
    for name in names:
        lines = lines + [PRESETS[name].departs] if PRESETS[name].departs else []
    return "; ".join(lines)


def preset_config(names: list[str], **overrides) -> RlConfig:
    """RlConfig from presets applied in order, then `overrides`; an unknown name lists the valid ones."""
    return RlConfig(**{**preset_values(PRESETS, names), **overrides})
