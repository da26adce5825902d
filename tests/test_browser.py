"""What a person sees: the page in headless Chromium, every tab opened, a run whose table fills and whose chart
renders, the trainer's preview and the RL tab's reward line. The generator is the tiny test model, so runs are fast."""
import dataclasses
import shutil

import pytest

import app
from core import profiles
from core.models import MODELS

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
    demo.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
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
    fresh.get_by_text(f"training align/{run_id}").first.wait_for(timeout=3000)  # the state as of this load
    fresh.close()

    page.get_by_role("tab", name="DPO / ORPO trainer").click()
    trainer.get_by_text("stopped at step 1/").first.wait_for(timeout=300000)
    page.screenshot(path=str(tmp_path / "stopped.png"), full_page=True)
    shutil.copy(tmp_path / "refused.png", "/tmp/i22b-refused.png")
    shutil.copy(tmp_path / "stopped.png", "/tmp/i22b-stopped.png")
