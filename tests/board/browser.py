"""The board in a real browser: Debian's chromium (never a browser Playwright downloads), headless, driven by
Playwright; axe-core (installed from npm, pinned in package.json) injected into the page for accessibility.

Also a command that takes the README's screenshots from a running board:
    .venv/bin/python -m tests.board.browser --board http://127.0.0.1:8005 --token "$(duban tokens issue …)" \\
        --out docs/screenshots
"""

from __future__ import annotations

import argparse
from pathlib import Path

from playwright.sync_api import Browser, Page, Playwright, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
DESKTOP, PHONE = {"width": 1366, "height": 768}, {"width": 390, "height": 844}
PAGES = {"overview": "/", "task": "/tasks/T07", "indicators": "/indicators",
         "indicator": "/indicators/export_tax_refund_days",
         "departments": "/departments", "bulletins": "/bulletins"}


def launch(playwright: Playwright) -> Browser:
    assert CHROMIUM.exists(), "chromium is missing: `make tools` installs Debian's package"
    return playwright.chromium.launch(executable_path=str(CHROMIUM))


def new_page(browser: Browser, viewport: dict) -> Page:
    """A page with axe-core loaded before each document's own scripts: as an init script it is not subject to
    the board's Content-Security-Policy, which refuses inline scripts (the way a test would otherwise add it)."""
    page = browser.new_page(viewport=viewport)
    page.add_init_script(path=str(AXE))
    return page


def sign_in(page: Page, board: str, token: str) -> None:
    page.goto(board + "/signin")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(board + "/")


def serious_violations(page: Page) -> list[dict]:
    """axe-core's violations of impact serious or critical on the page as it is now."""
    violations = page.evaluate("async () => (await axe.run(document)).violations")
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in violations if v["impact"] in ("serious", "critical")]


def overflows(page: Page) -> bool:
    """Whether the page is wider than the window (a phone would scroll sideways)."""
    return page.evaluate("document.documentElement.scrollWidth > window.innerWidth + 1")


def screenshots(board: str, token: str, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    taken = []
    with sync_playwright() as playwright:
        browser = launch(playwright)
        for size, viewport in (("1366x768", DESKTOP), ("390x844", PHONE)):
            page = new_page(browser, viewport)
            sign_in(page, board, token)
            for name, path in PAGES.items():
                page.goto(board + path)
                page.wait_for_load_state("networkidle")
                taken.append(out / f"{name}-{size}.png")
                page.screenshot(path=taken[-1])
            page.close()
        browser.close()
    return taken


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    arguments = parser.parse_args()
    for path in screenshots(arguments.board.rstrip("/"), arguments.token, arguments.out):
        print(path)
