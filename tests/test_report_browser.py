"""The leaderboard page in a real headless browser (Debian's chromium, driven by Selenium through
chromium-driver): it loads with no console error and fetches nothing, a column header sorts the
rows, the filters hide rows and columns. Skipped only where chromium is not installed locally;
in CI (.ci/run installs it) a missing browser is a failure."""

from __future__ import annotations

import os
import shutil

import pytest
from report_records import record, standard_set, write_all

from bench.report.make import make_report

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
]


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} missing in CI: .ci/run installs {package}")
        pytest.skip(f"{tool} not installed (apt-get install chromium chromium-driver)")
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = _need("chromium", "chromium")
    driver_path = _need("chromedriver", "chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(browser, tmp_path_factory):
    recs = standard_set()
    recs += [  # a second backbone: every finished full-data record again, scoring 0.6
        record(r["cell"]["method"], r["cell"]["task"], r["cell"]["seed"], 0.6, backbone="tiny-bert")
        for r in standard_set()
        if r["status"] == "ok" and not r["cell"]["partial"]
    ]
    root = write_all(tmp_path_factory.mktemp("results"), recs)
    make_report(root)
    browser.get((root / "leaderboard.html").as_uri())
    return browser


def _rows(driver) -> list[tuple[str, str]]:
    """(backbone, method) of the rows on display, top to bottom."""
    rows = driver.find_elements("css selector", "#leaderboard tbody tr")
    out = []
    for r in rows:
        if r.is_displayed():
            cells = r.find_elements("css selector", "td")
            out.append((cells[1].text, cells[2].text))
    return out


def _header(driver, text: str):
    return next(
        th
        for th in driver.find_elements("css selector", "#leaderboard thead th")
        if th.text == text
    )


def test_page_loads_without_console_errors_or_fetches(page):
    assert page.title == "tunebench leaderboard"
    errors = [e for e in page.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    assert page.execute_script("return performance.getEntriesByType('resource').length") == 0
    images = page.find_elements("css selector", "#figures img")
    assert len(images) == 4  # two figures for each of the two backbones
    assert all(page.execute_script("return arguments[0].naturalWidth", i) > 100 for i in images)
    assert page.find_element("id", "shown").text == "9 of 9 rows"


def test_sorting_by_a_column_reorders_rows(page):
    _header(page, "SST-2 (Acc.)").click()  # higher is better: best first; blanks last
    order = _rows(page)
    assert order[0] == ("tiny-roberta", "lora")  # 95.0, the best SST-2 mean
    assert order[-1][1] == "bitfit"  # no mean: last, whatever the direction
    _header(page, "SST-2 (Acc.)").click()  # reversed
    reverse = _rows(page)
    assert reverse[0] != order[0] and reverse[-1][1] == "bitfit"
    _header(page, "Method").click()  # text: A-Z
    assert [m for _, m in _rows(page)][:3] == ["bitfit", "finetune", "finetune"]


def test_filters_hide_rows_and_task_columns(page):
    from selenium.webdriver.support.ui import Select

    Select(page.find_element("id", "filter-family")).select_by_value("partial")
    assert {m for _, m in _rows(page)} == {"bitfit", "lora"}
    Select(page.find_element("id", "filter-backbone")).select_by_value("tiny-bert")
    assert _rows(page) == [("tiny-bert", "lora")]
    assert page.find_element("id", "shown").text == "1 of 9 rows"
    Select(page.find_element("id", "filter-family")).select_by_value("")
    Select(page.find_element("id", "filter-backbone")).select_by_value("")
    assert len(_rows(page)) == 9
    Select(page.find_element("id", "filter-task")).select_by_value("RTE")
    shown = [
        th.text
        for th in page.find_elements("css selector", "#leaderboard thead th")
        if th.is_displayed()
    ]
    assert "RTE (Acc.)" in shown and "SST-2 (Acc.)" not in shown
    Select(page.find_element("id", "filter-task")).select_by_value("")
