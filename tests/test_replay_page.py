"""`traderd replay --html`: the standalone chart page, opened from disk in headless Chromium with no network.

What a trader sees: the summary, candles while they are readable, a readout of the bar under the pointer,
a drag that zooms into a range, a trade row that zooms to its trade, and nothing fetched from anywhere.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from daemon.cli.main import main as traderd
from tests import browser
from tests.docs_images import images_dir

pytestmark = pytest.mark.skipif(not browser.available(), reason="needs Debian's chromium and chromium-driver")

DATA = Path(__file__).resolve().parent.parent / "strategies" / "data"
DOCS = images_dir()  # read at import: the tests' environment drops TRADERD_* variables
INTRADAY = ["--strategy", "opening_range", "--data", str(DATA / "sample_5m.csv"), "--timeframe", "5m",
            "--symbol", "ES", "--calendar", "cme", "--multiplier", "50", "--param", "quantity=2"]


def _count(driver: object, selector: str) -> int:
    return int(driver.execute_script(f"return document.querySelectorAll({selector!r}).length"))  # type: ignore[attr-defined]


def test_page_draws_zooms_reads_out_and_fetches_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    page = tmp_path / "replay.html"
    assert traderd(["replay", *INTRADAY, "--html", str(page)]) == 0
    capsys.readouterr()
    html = page.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # no external script, style or image
    assert "default-src 'none'" in html
    with browser.chromium(1280, 1120) as driver:
        driver.get(page.as_uri())
        assert "opening_range on ES 5m" in driver.find_element(By.ID, "summary").text
        assert driver.find_element(By.ID, "range").text.startswith("bars 1-744 of 744: 2024-11-22 08:30")
        assert _count(driver, "#chart .candle") == 0  # 744 bars: a close line, candles would be a smear
        assert _count(driver, "#chart polyline.close") == 1
        assert _count(driver, "#chart .entry") == 6 == _count(driver, "#trades tbody tr")
        assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0
        chart = driver.find_element(By.ID, "chart")
        width = chart.size["width"]
        ActionChains(driver).move_to_element_with_offset(chart, -width // 4, 0).click_and_hold() \
            .move_by_offset(width // 8, 0).release().perform()
        shown = driver.find_element(By.ID, "range").text
        first, last = (int(x) for x in re.match(r"bars (\d+)-(\d+) of 744", shown).groups())  # type: ignore[union-attr]
        assert 40 < last - first < 160, shown
        assert _count(driver, "#chart .candle") == last - first + 1  # zoomed in: candles
        ActionChains(driver).move_to_element_with_offset(chart, 0, -50).perform()
        readout = driver.find_element(By.ID, "readout").text
        assert re.search(r"2024-1[12]-\d\d \d\d:\d\d +O [\d.]+ H [\d.]+ L [\d.]+ C [\d.]+ +equity \$[\d,]+", readout)
        driver.find_element(By.CSS_SELECTOR, "#trades tbody tr:nth-child(3)").click()
        zoomed = driver.find_element(By.ID, "range").text
        assert "2024-11-29" in zoomed and zoomed != shown
        ActionChains(driver).move_to_element_with_offset(chart, 0, -50).perform()
        shot = driver.get_screenshot_as_png()  # zoomed to a trade, a bar read out: what the README shows
        driver.find_element(By.ID, "reset").click()
        assert driver.find_element(By.ID, "range").text.startswith("bars 1-744 of 744")
        logs = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        assert logs == []
    (DOCS / "replay-page.png").write_bytes(shot)
    assert browser.png_size(shot) == (1280, 1120)
    assert browser.distinct_colours(shot) > 50


def test_html_needs_an_html_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert traderd(["replay", *INTRADAY, "--html", str(tmp_path / "page.png")]) == 2
    assert "use a .html file name" in capsys.readouterr().err
    assert not (tmp_path / "page.png").exists()
