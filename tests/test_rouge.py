"""ROUGE scores and the reward function in trl's shape, the lead-n baseline, the news sample, and the RL tab's
endpoints through gradio_client."""
import dataclasses

import pytest

from core import data, profiles
from core import rl as rouge
from tests.served import served_app

REFERENCE = "the cat sat on the mat"


def test_identical_text_scores_one_and_disjoint_text_zero():
    assert rouge.rouge_scores(REFERENCE, REFERENCE) == {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0}
    assert rouge.rouge_scores(REFERENCE, "dogs bark loudly") == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}


def test_partial_overlap_matches_a_hand_count():
    # prediction "the cat sat": 3 unigrams all in the 6-unigram reference -> P 1, R 1/2, F1 2/3;
    # bigrams "the cat", "cat sat" both in the reference's 5 -> P 1, R 2/5, F1 4/7.
    scores = rouge.rouge_scores(REFERENCE, "the cat sat")
    assert scores["rouge1"] == pytest.approx(2 / 3) and scores["rouge2"] == pytest.approx(4 / 7)


@pytest.mark.parametrize("reference, prediction, rouge1, why", [
    ("runners running", "runner runs", 0.0, "no stemming: evaluate.load('rouge') compares words as they are"),
    ("Gomis collapses . He left the pitch .", "gomis collapsed; he left", 0.6,
     "lowercased, punctuation dropped: gomis/he/left of 4 and 6 words -> P 3/4, R 1/2 (a stemmer would give 0.8)"),
    ("Gomis collapses . He left the pitch .", "  Gomis collapses . He left the pitch .  ", 1.0,
     "the notebook's reward_fn(highlights, highlights) is 1; the prediction is stripped"),
])
def test_the_reward_is_rouge1_as_the_notebooks_evaluate_computes_it(reference, prediction, rouge1, why):
    assert rouge.rouge_reward([prediction], [reference]) == [pytest.approx(rouge1)], why


def test_reward_keeps_order_accepts_message_lists_and_ignores_extra_columns():
    completions = [REFERENCE, "dogs bark loudly", [{"role": "assistant", "content": "the cat sat"}]]
    rewards = rouge.rouge_reward(completions, [REFERENCE] * 3, prompts=["p"] * 3, id=["a", "b", "c"])
    assert rewards == pytest.approx([1.0, 0.0, 2 / 3])
    assert rouge.rouge_reward(["a b", "c d"], ["c d", "a b"]) == [0.0, 0.0]


def test_reward_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="2 completions but 1 reference"):
        rouge.rouge_reward(["a", "b"], ["a"])


ARTICLE = ('(CNN) -- Dr. Ada Stone opened the new clinic on Monday. "It was a long wait," she said. '
           "The clinic cost $4.5 million! Is it worth it? Residents think so. J. Smith agreed.")


@pytest.mark.parametrize("n, expected", [
    (1, "(CNN) -- Dr. Ada Stone opened the new clinic on Monday."),  # "Dr." does not end a sentence
    (2, '(CNN) -- Dr. Ada Stone opened the new clinic on Monday. "It was a long wait," she said.'),
    (3, '(CNN) -- Dr. Ada Stone opened the new clinic on Monday. "It was a long wait," she said. '
        "The clinic cost $4.5 million!"),  # "4.5" is no boundary, "!" is
    (9, ARTICLE),  # asking for more sentences than there are returns the whole text
])
def test_lead_baseline_takes_the_first_sentences(n, expected):
    assert rouge.lead_baseline(ARTICLE, n) == expected


def test_split_sentences_handles_questions_and_initials():
    sentences = rouge.split_sentences(ARTICLE)
    assert sentences[3:] == ["Is it worth it?", "Residents think so.", "J. Smith agreed."]
    with pytest.raises(ValueError, match="n must be >= 1"):
        rouge.lead_baseline(ARTICLE, 0)


def test_news_sample_lead3_is_a_prefix_that_scores_between_zero_and_one():
    rows = data.load_split(profiles.LITE.news, "validation")
    for row in rows:
        lead = rouge.lead_baseline(row["article"])
        assert row["article"].startswith(lead) and len(rouge.split_sentences(lead)) == 3
        assert 0.1 < rouge.rouge_scores(row["highlights"], lead)["rouge1"] < 1.0
        assert len(row["id"]) == 40 and int(row["id"], 16) >= 0


def test_news_article_checks_the_range():
    count = rouge.news_article(profiles.LITE.news, 0)["count"]
    with pytest.raises(ValueError, match=f"between 0 and {count - 1}, got {count}"):
        rouge.news_article(profiles.LITE.news, count)


@pytest.fixture(scope="module")
def client(tiny_lm_dir):
    with served_app(dataclasses.replace(profiles.LITE, summarizer=str(tiny_lm_dir))) as c:
        yield c


def test_load_article_endpoint_prefills_lead3(client):
    row = data.load_split(profiles.LITE.news, "validation")[2]
    article, highlights, summary = client.predict(2, api_name="/load_article")
    assert (article, highlights) == (row["article"], row["highlights"])
    assert summary == rouge.lead_baseline(row["article"])


def test_score_endpoint_returns_the_reward_and_both_bars(client):
    article, highlights, _ = client.predict(5, api_name="/load_article")
    line, bars = client.predict(article, highlights, highlights, api_name="/score_summary")
    assert "1.000" in line
    plotted = {label: f1 for label, _who, f1 in bars["data"]}
    lead = rouge.rouge_scores(highlights, rouge.lead_baseline(article))
    assert [plotted[f"{m} · yours"] for m in rouge.ROUGE_TYPES] == [1.0, 1.0, 1.0]
    assert [plotted[f"{m} · lead-3"] for m in rouge.ROUGE_TYPES] == pytest.approx(list(lead.values()))


def test_score_endpoint_without_an_article_is_a_user_error(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="load an article first"):
        client.predict("", "", "some summary", api_name="/score_summary")
