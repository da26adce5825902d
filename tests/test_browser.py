"""What a person sees: the page in headless Chromium, every tab opened, the status line live."""
import shutil

import pytest

import app
from core import profiles

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not shutil.which("chromium"), reason="needs Debian's chromium")]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    playwright = pytest.importorskip("playwright.sync_api")
    demo = app.build_app(profiles.LITE)
    demo.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(demo.local_url)
        page.get_by_text("Alignment Lab").first.wait_for(timeout=30000)
        yield page
        browser.close()
    demo.close()


def test_header_shows_profile_and_status(page):
    assert "Profile: lite" in page.inner_text("body")
    page.get_by_text("no model resident").first.wait_for(timeout=10000)


@pytest.mark.parametrize("title", [t for t, _ in app.TABS])
def test_each_tab_opens(page, title, tmp_path):
    page.get_by_role("tab", name=title).click()
    assert page.get_by_role("tab", name=title).get_attribute("aria-selected") == "true"
    page.screenshot(path=str(tmp_path / "tab.png"))
