"""What a teacher and a student see: two pages in headless Chromium, the teacher starts a session, the student joins
(the prompts are not editable for them) and votes, and the teacher's tally (its text and its bars) updates on its own.
"""
import dataclasses
import io
import shutil

import gradio as gr
import pytest

from core import profiles
from tabs import align_feedback as feedback_tab

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
BAR_COLOURS = [(76, 120, 168), (245, 133, 24), (228, 87, 86)]  # vega's first three category colours: A, B, tie
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not shutil.which("chromium"), reason="needs Debian's chromium")]


@pytest.fixture
def browser(tiny_lm_dir):
    playwright = pytest.importorskip("playwright.sync_api")
    profile = dataclasses.replace(profiles.LITE, generator=str(tiny_lm_dir), reward_model=f"judge:{tiny_lm_dir}")
    with gr.Blocks() as demo:
        feedback_tab.build(profile)
    demo.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium, demo.local_url
        chromium.close()
    demo.close()


def open_panel(chromium, url, name: str):
    page = chromium.new_page(viewport={"width": 1300, "height": 1800})
    page.goto(url)
    page.get_by_text("Your class as the humans in RLHF").first.click()
    page.get_by_label("session name").first.fill(name)
    return page


def coloured_pixels(png: bytes) -> int:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    return sum(1 for pixel in image.getdata()
               if any(sum(abs(a - b) for a, b in zip(pixel, colour)) < 30 for colour in BAR_COLOURS))


def test_a_students_vote_reaches_the_teachers_tally(browser, tmp_path):
    chromium, url = browser
    teacher = open_panel(chromium, url, "monday")
    teacher.get_by_label("answer length (max new tokens)").fill("16")
    teacher.get_by_role("button", name="Start a session").click()
    teacher.get_by_text("you started this session").wait_for(timeout=120000)
    assert coloured_pixels(teacher.locator("#feedback-tally-plot").screenshot()) < 50, "no bars before any vote"

    student = open_panel(chromium, url, "monday")
    student.get_by_role("button", name="Join", exact=True).click()
    student.get_by_text("you are voting").wait_for(timeout=30000)
    assert student.get_by_label("prompts, one per line").first.is_disabled(), "a student cannot edit the prompts"
    student.get_by_label("A (left)").check()
    student.get_by_role("button", name="Vote", exact=True).click()
    student.get_by_text("stored for pair 1").wait_for(timeout=30000)
    assert "2. Explain to a ten-year-old" in student.get_by_label("pair").first.input_value(), "moved on to pair 2"

    teacher.get_by_text("students who voted: 1").wait_for(timeout=30000)  # the timer, no click
    teacher.wait_for_timeout(1000)  # the chart draws after the table
    plot = teacher.locator("#feedback-tally-plot").screenshot()
    teacher.screenshot(path=str(tmp_path / "teacher.png"), full_page=True)
    assert coloured_pixels(plot) > 200, "the vote shows as a bar"
