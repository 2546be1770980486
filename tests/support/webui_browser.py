# Copyright: homelab.gpu_stack contributors
# Apache License 2.0 (see LICENSE)
"""Drive Open WebUI in Debian's headless chromium, as a person would.

Run with the Open WebUI venv's python (it has Playwright; the dev venv does
not): log in, pick the model, send a message and wait for the answer, keep
a screenshot; then wait for the test to break the chain (the file
``<workdir>/go`` appears) and send a second message on the same page.
Progress goes to ``<workdir>/progress.json`` so the test can follow it.

    python webui_browser.py URL EMAIL MODEL WORKDIR   (password: $WEBUI_PASSWORD)
"""

import json
import os
import sys
import time
from pathlib import Path

from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

# As root in a container or CI: no sandbox, and nothing fetched by the browser.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ANSWER_TIMEOUT_MS = 120000


def note(workdir, **progress):
    path = Path(workdir) / "progress.json"
    state = json.loads(path.read_text()) if path.exists() else {}
    state.update(progress)
    path.write_text(json.dumps(state))


def ask(page, text, tries=3):
    """Send text; return the assistant's answer once Open WebUI has finished it.

    The tiny random-weight model may end its answer at once (no text): then,
    as a person would, ask again, up to ``tries`` times.
    """
    answers = page.locator("#response-content-container")
    for _try in range(tries):
        turn = answers.count()
        page.locator("#chat-input").click()
        page.keyboard.type(text)
        page.keyboard.press("Enter")
        answers.nth(turn).wait_for(state="attached", timeout=ANSWER_TIMEOUT_MS)
        # While it streams the input shows a stop button; "Voice mode" is back
        # once the answer is complete.
        page.locator("button[aria-label='Voice mode']").wait_for(state="visible", timeout=ANSWER_TIMEOUT_MS)
        answer = answers.nth(turn).inner_text()
        if answer.strip():
            return answer
    return answer


def main(url, email, model, workdir):
    workdir = Path(workdir)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.goto(url + "/auth", wait_until="networkidle")
        page.fill("#email", email)
        page.fill("#password", os.environ["WEBUI_PASSWORD"])
        page.click("button[type=submit]")
        page.wait_for_url(url + "/", timeout=60000)
        note(workdir, logged_in=True)
        # The release notes greet an account once (its settings remember it).
        whats_new = page.get_by_role("button", name="Okay, Let's Go!")
        try:
            whats_new.wait_for(timeout=15000)
            whats_new.click()
        except PlaywrightTimeout:
            pass

        selector = page.locator("button[aria-haspopup=listbox][id^=model-selector]").first
        selector.click()
        page.get_by_role("option", name="Select %s model" % model).click()
        note(workdir, model_label=selector.get_attribute("aria-label"))

        first = ask(page, "Say hello.")
        page.screenshot(path=str(workdir / "answer-gpu.png"), full_page=True)
        note(workdir, first=first)

        end = time.monotonic() + 300
        while not (workdir / "go").exists():
            if time.monotonic() > end:
                raise SystemExit("the test never said go")
            time.sleep(0.2)
        second = ask(page, "Say hello again.")
        page.screenshot(path=str(workdir / "answer-after-gpu-stopped.png"), full_page=True)
        note(workdir, second=second, done=True)
        browser.close()


if __name__ == "__main__":
    main(*sys.argv[1:5])
