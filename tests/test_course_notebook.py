"""The "Course notebook" presets against the seed notebooks (../shared/seeds): each preset's config checked field by
field against the notebook's numbers (a table, each row with the seed line it comes from), the notebook's own data
code run beside ours, and every other preset saying how it departs from the notebook."""
import json

import pytest
from Levenshtein import ratio

from core import align, data, profiles, rl
from core.rl.news import SPLIT, load_articles
from tabs import rl as rl_tab

# seeds/000_a7d55a745cb87b7c.txt: the DPO/ORPO notebook (CONFIG, filter_responses, the subset cell)
ALIGN_NOTEBOOK = [  # (AlignConfig field, the notebook's value, the seed line it comes from)
    ("pairs", 1600, "000:63 train_data_size = 1600"),
    ("max_length", 2048, "000:65 max_seq_length = 2048"),
    ("micro_batch", 2, "000:66 train_batch_size = 2"),
    ("effective_batch", 8, "000:66-67 train_batch_size = 2 x gradient_accumulation_steps = 4"),
    ("gradient_checkpointing", "on", '000:73 use_gradient_checkpointing = "unsloth" (unsloth\'s, on CUDA)'),
    ("epochs", 1, "000:68 epochs = 1"),
    ("lora_r", 64, "000:71 lora_rank = 64"),
    ("lora_alpha", 64, "000:72 lora_alpha = 64"),
    ("target_modules", align.TARGET_MODULES, "000:74-75 target_modules = q, k, v, o, gate, up, down"),
    ("seed", 42, "000:55 seed = 42; 000:421 shuffle(seed=CONFIG.seed)"),
    ("similarity", 0.6, "000:398 filter_responses(row, similarity_threshold=0.6, ...)"),
    ("word_limit", 1000, "000:398 filter_responses(..., word_limit=1000)"),
    ("drop_toxic", False, "000:418 dataset.filter(filter_responses): no source filter, toxic-dpo stays"),
]
# seeds/002_f00476227d8896e6.txt, Exercise 2: its PPOConfig, build_dataset, generation_kwargs and loop; the rest
# are trl 0.11's PPOConfig defaults
RL_NOTEBOOK = [  # (RlConfig field, the notebook's value, the seed line it comes from)
    ("learning_rate", 1.41e-5, "002:500 learning_rate=1.41e-5"),
    ("batch_size", 4, "002:503 batch_size=4"),
    ("mini_batch_size", 4, "002:504 mini_batch_size=4"),
    ("ppo_epochs", 4, "002:506 ppo_epochs=4"),
    ("max_prompt_tokens", 512, "002:559-560 max_length=512, truncation=True"),
    ("max_new_tokens", 128, "002:755 output_max_length = 128"),
    ("temperature", 1.0, "002:760-762 top_k 0, top_p 1.0, do_sample: pure sampling"),
    ("shuffle_articles", True, "002:671 PPOTrainer(dataset=...): trl 0.11's dataloader shuffles"),
    ("max_steps", 101, "002:784-789 `if epoch == 100: break` after the step: steps 0..100"),
    ("n_articles", 404, "002:769 101 batches of 4 from the shuffled validation split, each article once"),
    ("lora", False, "002:618 AutoModelForCausalLMWithValueHead: every weight trains"),
    ("max_grad_norm", 0.0, "trl 0.11 PPOConfig max_grad_norm=None: no clipping"),
    ("bf16", False, "trl 0.11's Accelerator without mixed precision: fp32"),
    ("static_cache", False, "002:776 ppo_trainer.generate: transformers' dynamic cache"),
    ("vf_coef", 0.1, "trl 0.11 PPOConfig vf_coef=0.1 (the bonus question's knob)"),
    ("cliprange", 0.2, "trl 0.11 PPOConfig cliprange=0.2"),
    ("cliprange_value", 0.2, "trl 0.11 PPOConfig cliprange_value=0.2"),
    ("gamma", 1.0, "trl 0.11 PPOConfig gamma=1"),
    ("lam", 0.95, "trl 0.11 PPOConfig lam=0.95"),
    ("kl", "adaptive", "trl 0.11 PPOConfig adap_kl_ctrl=True"),
    ("init_kl_coef", 0.2, "trl 0.11 PPOConfig init_kl_coef=0.2"),
    ("target_kl", 6.0, "trl 0.11 PPOConfig target=6"),
    ("horizon", 10000, "trl 0.11 PPOConfig horizon=10000"),
    ("score_scaling", "none", "trl 0.11 PPOConfig use_score_scaling=False"),
    ("score_clip", 0.0, "trl 0.11 PPOConfig score_clip=None"),
]


@pytest.mark.parametrize("profile", [profiles.FULL, profiles.LITE], ids=["full", "lite"])
@pytest.mark.parametrize("field, value, seed_line", ALIGN_NOTEBOOK, ids=[row[0] for row in ALIGN_NOTEBOOK])
def test_the_align_notebook_preset_is_the_notebooks_config(profile, field, value, seed_line):
    assert getattr(align.preset_config("notebook", profile), field) == value, seed_line


@pytest.mark.parametrize("profile", [profiles.FULL, profiles.LITE], ids=["full", "lite"])
@pytest.mark.parametrize("field, value, seed_line", RL_NOTEBOOK, ids=[row[0] for row in RL_NOTEBOOK])
def test_the_rl_notebook_preset_is_the_notebooks_ppo_config(profile, field, value, seed_line):
    """On the lite profile too: the notebook's preset undoes the lite preset it is stacked on."""
    assert getattr(rl_tab.base_config(profile, "notebook"), field) == value, seed_line


def notebook_filter(row, similarity_threshold=0.6, word_limit=1000):
    """The notebook's filter_responses, as written in seeds/000 (lines 398-415)."""
    chosen_text = row['chosen'][-1]['content'] if isinstance(row['chosen'], list) else row['chosen']
    rejected_text = row['rejected'][-1]['content'] if isinstance(row['rejected'], list) else row['rejected']
    if ratio(chosen_text, rejected_text) >= similarity_threshold:
        return False
    return not (len(chosen_text.split()) >= word_limit or len(rejected_text.split()) >= word_limit)


def test_the_notebook_presets_pairs_are_the_rows_the_notebooks_code_selects():
    """seeds/000 lines 418-421: filter, then shuffle(seed=42).select(range(n)); the toxic-dpo rows stay in, and the
    result counts them. (n: the lite sample has fewer than 1600 pairs after the filters.)"""
    cfg = align.preset_config("notebook", profiles.LITE, pairs=30)
    rows = data.load_split(cfg.dataset, "train")
    theirs = rows.filter(notebook_filter).shuffle(seed=42).select(range(30))
    ours = align.prepare(align.data_config(cfg))
    assert [json.dumps(r, sort_keys=True) for r in ours.subset] == [json.dumps(r, sort_keys=True) for r in theirs]
    toxic = sum(source == align.TOXIC_SOURCE for source in theirs["source"])
    assert ours.toxic_selected == toxic > 0


def test_the_notebook_presets_articles_come_from_the_shuffled_split_not_its_head():
    """trl 0.11's PPOTrainer shuffles the whole validation split (seeds/002 line 671); the fast path takes the head."""
    cfg = rl.preset_config(["notebook"], news=profiles.LITE.news, n_articles=8)
    rows = data.load_split(cfg.news, SPLIT)
    drawn = load_articles(cfg.news, cfg.n_articles, shuffle_seed=cfg.seed)
    assert [r["article"] for r in drawn] == list(rows.shuffle(seed=cfg.seed).select(range(8))["article"])
    assert [r["article"] for r in drawn] != list(rows.select(range(8))["article"])
    assert [rows[r["id"]]["article"] for r in drawn] == [r["article"] for r in drawn], "ids are the split's rows"


@pytest.mark.parametrize("presets", [align.PRESETS, rl.PRESETS], ids=["align", "rl"])
def test_every_preset_but_the_notebooks_says_how_it_departs_from_the_notebook(presets):
    departs = {name: bool(p.departs) for name, p in presets.items()}
    assert departs == {name: name != "notebook" for name in presets}


@pytest.mark.parametrize("profile, preset, expected", [
    (profiles.FULL, "healthy", rl.config.FAST_PATH),
    (profiles.LITE, "kl-too-strong", "a fixed KL coefficient of 2.0"),
    (profiles.LITE, "notebook", "It is the notebook's run."),
], ids=["fast path", "lite and a discussion preset", "the notebook's run undoes the lite preset"])
def test_the_rl_tab_says_next_to_each_preset_how_it_departs(profile, preset, expected):
    line = rl_tab.shows_line(profile, preset)
    assert expected in line and ("128-token" in line) == (profile.name == "lite" and preset != "notebook"), line
