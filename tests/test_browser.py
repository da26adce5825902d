"""What a person sees: the page in headless Chromium, every tab opened, a run whose table fills and whose chart
renders, the trainer's preview, the RL tab's reward line, and two training runs overlaid on every chart of each
training tab. The generator is the tiny test model, so runs are fast."""
import collections
import dataclasses
import re
import shutil
import time

import pytest

import app
from core import curves, profiles
from core.models import MODELS
from core.runfolder import RunRecorder, find_run
from core.runs import runs_dir
from tests.align_tiny import finished_run
from tests.rl_tiny import finished_rl_run

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not shutil.which("chromium"), reason="needs Debian's chromium")]
# a widget each tab shows first, as a person reads it
TAB_LANDMARKS = {"ICL lab": "Run evaluation", "Reward explorer": "Score", "DPO / ORPO trainer": "Filter & format",
                 "RAG recipe chat": "Ask", "RL summarizer": "Start training"}


@pytest.fixture(scope="module")
def page(tiny_lm_dir, tmp_path_factory):
    playwright = pytest.importorskip("playwright.sync_api")
    MODELS.unload()  # the page opens on an empty slot, whatever a test module before this one left resident
    demo = app.build_app(dataclasses.replace(profiles.LITE, generator=str(tiny_lm_dir)))
    demo.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, css=app.CSS)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(demo.local_url)
        page.get_by_text("Alignment Lab").first.wait_for(timeout=30000)
        yield page
        browser.close()
    demo.close()


def visible_panel(page):
    return page.locator("[role=tabpanel]:visible").first


def test_header_shows_profile_and_status(page):
    assert "Profile: lite" in page.inner_text("body")
    page.get_by_text("no model resident").first.wait_for(timeout=10000)


@pytest.mark.parametrize("title", list(TAB_LANDMARKS))
def test_each_tab_opens_on_its_own_widgets(page, title, tmp_path):
    page.get_by_role("tab", name=title).click()
    panel = visible_panel(page)
    panel.get_by_role("button", name=TAB_LANDMARKS[title], exact=True).first.wait_for(state="visible", timeout=10000)
    page.screenshot(path=str(tmp_path / "tab.png"))


def test_icl_run_fills_the_accuracy_table_and_draws_the_chart(page, tmp_path):
    page.get_by_role("tab", name="ICL lab").click()
    panel = visible_panel(page)
    panel.get_by_label("questions (n)").fill("2")
    panel.get_by_label("max new tokens").fill("4")
    panel.get_by_role("button", name="Run evaluation").click()
    panel.get_by_text("4 rows").first.wait_for(timeout=120000)
    text = panel.inner_text()
    table = text.split("accuracy per strategy", 1)[1].split("accuracy with 95% Wilson intervals", 1)[0]
    assert "baseline\n2" in table and "zero_shot_cot\n2" in table, "one filled row per strategy, n = 2"
    chart = panel.locator("img").first
    chart.wait_for(state="visible", timeout=30000)
    assert chart.evaluate("img => img.naturalWidth") > 300, "the accuracy chart rendered"
    page.screenshot(path=str(tmp_path / "icl.png"), full_page=True)


def test_trainer_preview_shows_chat_formatted_pairs(page):
    page.get_by_role("tab", name="DPO / ORPO trainer").click()
    panel = visible_panel(page)
    panel.get_by_role("button", name="Filter & format").click()
    panel.get_by_text("kept").first.wait_for(timeout=60000)
    assert "<|im_start|>user" in panel.inner_text()


def test_rl_tab_scores_the_lead_3_summary(page):
    page.get_by_role("tab", name="RL summarizer").click()
    panel = visible_panel(page)
    panel.get_by_text("ROUGE as a reward: score a summary of your own").click()
    panel.get_by_role("button", name="Load article").click()
    playwright = pytest.importorskip("playwright.sync_api")
    playwright.expect(panel.get_by_label("Reference highlights")).not_to_have_value("", timeout=30000)
    panel.get_by_role("button", name="Score with ROUGE").click()
    panel.get_by_text("Reward (rouge1 F1)").first.wait_for(timeout=30000)
    assert "lead-3 baseline" in panel.inner_text()


LONG = "The committee met again on Tuesday to weigh the proposal, and the debate ran late into the evening. " * 5
# how a table sits in its block: whether anything in it scrolls sideways, each header's right edge against the
# block's, and the header words a line break cut in two ("traine d_scor e")
TABLE_FIT = """block => {
  const table = block.querySelector('table'), right = block.getBoundingClientRect().right;
  const scrolls = [];
  for (let el = table; el && el !== block.parentElement; el = el.parentElement)
    if (el.scrollWidth > el.clientWidth + 1) scrolls.push([el.className, el.scrollWidth, el.clientWidth]);
  const heads = [...block.querySelectorAll('thead th')].filter(th => th.getBoundingClientRect().width > 0);
  const cut = [];
  for (const th of heads) {
    const walker = document.createTreeWalker(th, NodeFilter.SHOW_TEXT);
    for (let node; (node = walker.nextNode());)
      for (const m of node.textContent.matchAll(/\\S+/g)) {
        const range = document.createRange();
        range.setStart(node, m.index); range.setEnd(node, m.index + m[0].length);
        if (new Set([...range.getClientRects()].map(r => Math.round(r.top))).size > 1) cut.push(m[0]);
      }
  }
  return {scrolls, cut, headers: heads.map(th => th.innerText.replace(/\\s+/g, ' ').trim()),
          offscreen: heads.filter(th => th.getBoundingClientRect().right > right + 1).map(th => th.innerText.trim())};
}"""


def table_fit(panel, label: str) -> dict:
    block = panel.locator(".block").filter(has=panel.page.get_by_text(label, exact=True)).last
    block.scroll_into_view_if_needed()
    return block.evaluate(TABLE_FIT)


def test_answers_and_before_after_tables_fit_the_page_with_every_column_in_view(page, tmp_path):
    """At 1214 px the answers table was 3,160 px wide: the trained answer and both scores off-screen, "traine
    d_scor e" as headers; the RL before/after table showed only article and reference; the samples a 40-hex id."""
    now = time.time()
    answers = [{"prompt": f"Question {i}? {LONG}", "base": f"Base. {LONG}", "trained": f"Trained. {LONG}"}
               for i in range(2)]
    finished_run("1-quick-dpo", "dpo", now - 20, answers, [(2.217, 2.159)] * 2)
    finished_run("2-quick-orpo", "orpo", now - 10, answers, [(2.217, 2.3)] * 2)
    finished_rl_run("1-healthy-ppo", now, LONG)
    page.set_viewport_size({"width": 1214, "height": 900})
    page.reload()  # a fresh page picks the newest run of each tab
    page.get_by_text("Alignment Lab").first.wait_for(timeout=30000)
    page.get_by_role("tab", name="DPO / ORPO trainer").click()
    panel = visible_panel(page)
    panel.locator("text=Trained. The committee >> visible=true").first.wait_for(timeout=30000)
    panel.get_by_role("button", name="Compare DPO and ORPO").click()
    page.get_by_text("Compared the newest run of each method with scores: 1-quick-dpo, 2-quick-orpo").wait_for(
        timeout=30000)
    page.get_by_text("These runs wrote the very same answers").first.wait_for(timeout=10000)
    fits = {"answers of the picked run": table_fit(panel, "answers of the picked run"),
            "DPO vs ORPO: time and memory (Question 9)": table_fit(panel, "DPO vs ORPO: time and memory (Question 9)"),
            "DPO vs ORPO: what training changed": table_fit(panel, "DPO vs ORPO: what training changed")}
    page.screenshot(path="/tmp/test_browser_answers_table.png")
    page.get_by_role("tab", name="RL summarizer").click()
    panel = visible_panel(page)
    panel.locator("text=After. The committee >> visible=true").first.wait_for(timeout=30000)
    for label in ("summaries sampled in the last steps", "before and after training (greedy summaries of fixed "
                                                          "articles)"):
        fits[label] = table_fit(panel, label)
    page.screenshot(path="/tmp/test_browser_before_after_table.png")
    assert fits["answers of the picked run"]["headers"] == ["prompt", "base answer", "trained answer", "base score",
                                                            "trained score"]
    assert fits["before and after training (greedy summaries of fixed articles)"]["headers"] == [
        "article", "reference", "before", "ROUGE-1 before", "after", "ROUGE-1 after"]
    for label, fit in fits.items():
        assert not fit["scrolls"], f"{label}: scrolls sideways {fit['scrolls']}"
        assert not fit["offscreen"], f"{label}: headers off-screen {fit['offscreen']}"
        assert not fit["cut"], f"{label}: header words broken across lines {fit['cut']}"
    text = panel.inner_text()
    assert "article 2" in text and "ROUGE-1 after" in text


# Two runs per training tab, as a tab names them; every logged key of the tab's charts; the first run has one step
OVERLAID = {
    "RL summarizer": ("rl", curves.RL_CHARTS, ["20261201-100000-healthy-ppo", "20261201-100500-kl-too-strong-ppo"]),
    "DPO / ORPO trainer": ("align", curves.ALIGN_CHARTS, ["20261201-100000-quick-dpo", "20261201-100500-quick-orpo"]),
}
# Each chart's line marks: vega draws one path per series in the chart's line layer; a series whose colour is not
# in the chart's colour domain gets no stroke and shows nothing.
LINES = """el => [...el.querySelectorAll('.training-curve')].map(chart => ({
    lines: [...chart.querySelectorAll('g.mark-line path')].filter(p => p.getAttribute('stroke')).length,
    dots: [...chart.querySelectorAll('g.mark-line path')].filter(p => !p.getAttribute('d').includes('L')
                                                                   && getComputedStyle(p).strokeWidth === '8px').length,
    legend: [...chart.querySelectorAll('.role-legend-label text')].map(t => t.textContent),
    steps: [...(chart.querySelector('.role-axis-label')?.querySelectorAll('text') ?? [])].map(t => t.textContent)}))"""


def write_runs(kind: str, charts, names: list[str]) -> None:
    for n, name in enumerate(names):
        recorder = RunRecorder(runs_dir() / kind / name)
        recorder.write_config({"method": name.rsplit("-", 1)[1], "algo": "ppo", "max_steps": 1 + 2 * n})
        for step in range(1, 2 + 2 * n):
            logged = {key: 0.1 * step + n for chart in charts for key in chart.keys}
            if not name.endswith("orpo"):  # a DPO run logs no ORPO terms
                logged = {k: v for k, v in logged.items() if k not in next(c for c in curves.ALIGN_CHARTS if c.title == 'ORPO terms').keys}
            recorder.log(step, 1 + 2 * n, logged)


@pytest.mark.parametrize("title", list(OVERLAID))
def test_two_runs_overlaid_draw_a_line_per_run_on_every_chart(page, title, tmp_path):
    """The bug: picking a second run in "show runs" left every chart drawn before with its old legend and no line."""
    playwright = pytest.importorskip("playwright.sync_api")
    kind, charts, names = OVERLAID[title]
    write_runs(kind, charts, names)
    page.get_by_role("tab", name=title).click()
    panel = visible_panel(page)
    playwright.expect(panel.locator(".training-curve g.mark-line path").first).to_be_visible(timeout=20000)
    page.wait_for_timeout(1500)  # every chart of the newest run drawn
    picker = panel.get_by_label("show runs (several overlay on the charts)")
    picker.click()
    page.get_by_role("option", name=names[0]).click()
    picker.blur()
    runs = [find_run(kind, name) for name in names]
    points = [collections.Counter(r["series"] for r in curves.chart_rows(runs, chart)) for chart in charts]
    expected, lone = [len(p) for p in points], [sum(n == 1 for n in p.values()) for p in points]
    assert min(expected) >= 2, "every chart has a series from each run (the ORPO terms: three from one run)"
    drawn = []
    for _ in range(40):  # the poll draws within a second or two of the pick
        page.wait_for_timeout(500)
        drawn = panel.evaluate(LINES)
        if [chart["lines"] for chart in drawn] == expected:
            break
    page.screenshot(path=f"/tmp/overlaid-{kind}.png", full_page=True)
    assert [chart["lines"] for chart in drawn] == expected, drawn
    assert all(len(chart["legend"]) == n for chart, n in zip(drawn, expected)), "the legend names every series"
    assert [chart["dots"] for chart in drawn] == lone, "the one-step run's single points are drawn as dots"
    assert all(label.split()[0] in ("healthy", "kl-too-strong", "dpo", "orpo") for chart in drawn
               for label in chart["legend"]), "runs named by what tells them apart (preset, method), not by a stamp"
    assert all(chart["steps"] == ["0", "1", "2", "3", "4", "5"] for chart in drawn), "whole steps"


def test_stop_before_step_1_a_refusal_and_a_fresh_pages_status(page, tmp_path):
    """Start a DPO run and press Stop at once (the job is still preparing): while it holds the accelerator an ICL
    run is refused with a warning that leaves the table shown before in place, and a page opened now names the
    job in its header; the run then stops at step 1."""
    page.get_by_role("tab", name="ICL lab").click()
    icl = visible_panel(page)
    icl.get_by_label("questions (n)").fill("2")
    icl.get_by_label("max new tokens").fill("4")
    icl.get_by_role("button", name="Run evaluation").click()
    icl.get_by_text("4 rows").first.wait_for(timeout=120000)
    page.get_by_role("tab", name="DPO / ORPO trainer").click()
    trainer = visible_panel(page)
    trainer.get_by_role("button", name="Start training").click()
    trainer.get_by_text("Started").first.wait_for(timeout=30000)
    trainer.get_by_role("button", name="Stop and save").click()
    page.get_by_text("its adapter will be saved").first.wait_for(timeout=10000)
    run_id = trainer.locator("strong").filter(has_text="-quick-dpo").first.inner_text()

    page.get_by_role("tab", name="ICL lab").click()
    icl.get_by_label("max new tokens").fill("5")  # not in the answer cache: this run needs the model
    icl.get_by_role("button", name="Run evaluation").click()
    page.get_by_text("The run is on the DPO / ORPO trainer tab").first.wait_for(timeout=30000)
    page.screenshot(path=str(tmp_path / "refused.png"), full_page=True)
    assert "4 rows" in icl.inner_text() and not icl.get_by_text("Error", exact=True).count(), \
        "the refused event left the accuracy table in place, with no error badge"

    fresh = page.context.browser.new_page()
    fresh.goto(page.url)
    status = fresh.get_by_text(re.compile(r"training (align|rl)/")).first
    status.wait_for(timeout=15000)  # a loaded machine may take seconds to serve the page
    assert run_id in status.inner_text(), "the first job a fresh page's status names is the running one"
    fresh.close()

    page.get_by_role("tab", name="DPO / ORPO trainer").click()
    trainer.get_by_text("stopped at step 1/").first.wait_for(timeout=300000)
    page.screenshot(path=str(tmp_path / "stopped.png"), full_page=True)
    shutil.copy(tmp_path / "refused.png", "/tmp/i22b-refused.png")
    shutil.copy(tmp_path / "stopped.png", "/tmp/i22b-stopped.png")
