"""The notebook's Question 3 in the RL tab: one run's policy on the run's own articles cut at two token limits, each
summary what that policy says greedily to the article cut there, with its ROUGE; the tab's button shows them."""
import dataclasses
import json

import pytest

from core.models import MODELS
from core.rl import rouge_scores, truncation_comparison
from core.rl import before_after
from core.rl.before_after import greedy_summaries
from core.rl.news import load_articles
from core.runs import runs_dir, write_json
from tabs import rl_summaries
from testing.tiny import CORPUS, save_tiny_lm, tiny_tokenizer
from tests.rl_tiny import one_thread, tiny_config  # noqa: F401 (fixture)

LIMITS = (8, 40)  # tiny articles: the short cut bites on the long one only


@pytest.fixture
def run(tiny_lm_dir, tmp_path):
    """An RL run folder (config.json as the job writes it) over one long and one short article."""
    news = tmp_path / "news.jsonl"
    rows = [{"article": " ".join(CORPUS[:6]), "highlights": CORPUS[0], "id": "long"},
            {"article": "Tom has 3.", "highlights": CORPUS[2], "id": "short"}]
    news.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = tiny_config(tiny_lm_dir, news=str(news), max_new_tokens=6, batch_size=4, mini_batch_size=4, n_articles=4)
    folder = runs_dir() / "rl" / "20261206-120000-healthy-ppo"
    folder.mkdir(parents=True)
    write_json(folder / "config.json", dataclasses.asdict(cfg))
    yield folder, cfg
    MODELS.unload()


def test_each_limit_gets_the_policys_own_greedy_summary_of_the_cut_article(run):
    folder, cfg = run
    result = truncation_comparison(folder, LIMITS)
    rows = load_articles(cfg.news, cfg.eval_articles)
    tokens = [len(tiny_tokenizer()(r["article"], add_special_tokens=False)["input_ids"]) for r in rows]
    assert tokens[0] > LIMITS[0] >= tokens[1], "the long article is cut at the short limit, the short one is not"
    assert [a["article_tokens"] for a in result["articles"]] == tokens
    assert result["policy"] == "untrained" and result["limits"] == list(LIMITS)
    for limit in LIMITS:
        expected = greedy_summaries(dataclasses.replace(cfg, max_prompt_tokens=limit), rows)
        assert [a[str(limit)]["text"] for a in result["articles"]] == expected, f"the policy's summaries at {limit}"
        for article in result["articles"]:
            assert article[str(limit)] == {"text": article[str(limit)]["text"],
                                           **rouge_scores(article["highlights"], article[str(limit)]["text"])}
    short = result["articles"][1]
    assert short[str(LIMITS[0])]["text"] == short[str(LIMITS[1])]["text"], "an article under both limits reads alike"
    assert json.loads((folder / "truncation.json").read_text()) == result


def test_the_idle_core_thread_count_holds_for_the_comparison_only(run, monkeypatch):
    """On a busy CPU the comparison generates on the idle cores' threads (set_cpu_threads), and gives the app its own
    count back after."""
    import os

    import torch

    seen = []
    real = before_after.summarize
    monkeypatch.setattr(before_after, "summarize", lambda *a: seen.append(torch.get_num_threads()) or real(*a))
    monkeypatch.setattr(os, "getloadavg", lambda: (5.0, 5.0, 5.0))  # both cores busy with other work
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(2)
    truncation_comparison(run[0], LIMITS)
    assert seen == [1, 1] and torch.get_num_threads() == 2


def test_a_run_that_saved_its_adapter_is_compared_trained(run, tmp_path):
    folder, cfg = run
    truncation_comparison(folder, LIMITS)  # the untrained policy resident in the slot first
    save_tiny_lm(folder / "adapter", seed=1)  # a full fine-tune saves the whole model there
    result = truncation_comparison(folder, LIMITS)
    rows = load_articles(cfg.news, cfg.eval_articles)
    assert result["policy"] == "trained"
    expected = greedy_summaries(dataclasses.replace(cfg, max_prompt_tokens=LIMITS[1]), rows, adapter=folder / "adapter")
    assert [a[str(LIMITS[1])]["text"] for a in result["articles"]] == expected, "the trained weights, not the cached"


def test_the_tabs_button_tables_both_limits_side_by_side(run):
    folder, _cfg = run
    line, frame = rl_summaries.on_truncation_click([folder.name])
    short, long = rl_summaries.SHORT, rl_summaries.LONG
    assert list(frame.columns) == list(rl_summaries.TRUNCATION_COLUMNS) and len(frame) == 2
    saved = json.loads((folder / "truncation.json").read_text())
    assert saved["limits"] == [short, long] == [128, 512], "the tab compares the lite cut with the notebook's"
    assert f"{saved['mean'][str(short)]['rouge1']:.3f} cut at {short} tokens" in line
    assert frame[f"cut at {long}"].tolist() == [a[str(long)]["text"] for a in saved["articles"]]


def test_without_a_pick_the_button_says_what_to_do():
    import gradio as gr

    with pytest.raises(gr.Error, match="pick a run in the runs table first"):
        rl_summaries.on_truncation_click([])
