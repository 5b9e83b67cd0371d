"""`styledrop report`: Table 2 as self-contained HTML, checked as data and in a browser."""

import json
from pathlib import Path

import numpy as np
import pytest

from styledrop.report import interval

from .browser import CHROMIUM, DRIVER, chromium
from .tiny import tiny_base


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_base(tmp_path_factory.mktemp("tiny"))


def test_interval_is_a_t_interval_over_seeds():
    mean, lo, hi = interval(np.array([0.2, 0.4, 0.6, 0.8]))
    assert mean == pytest.approx(0.5) and hi - mean == pytest.approx(mean - lo)
    assert hi - mean == pytest.approx(3.18 * np.std([0.2, 0.4, 0.6, 0.8], ddof=1) / 2)
    assert interval(np.array([0.3, 0.3]))[1:] == (pytest.approx(0.3), pytest.approx(0.3))
    assert interval(np.array([0.0, 0.0, 0.0, 0.25]), (0.0, 1.0))[1] == 0.0  # a rate's interval stays in [0, 1]


def test_a_held_out_variant_is_captioned_as_its_parent():
    from styledrop.report import ReportConfig
    assert ReportConfig(style="amber_neon").phrase() == "in neon glow style"
    assert ReportConfig(style="lava").phrase() == "in molten lava style"
    assert ReportConfig(style="amber_neon", token="[v]").phrase() == "in [v] style"
    assert ReportConfig(style=None, descriptor=" in my style ").phrase() == "in my style"


def test_report_command(cli, base, tmp_path):
    out = tmp_path / "report.html"
    code, stdout, err = cli("report", "--style", "lava", "--out", out, "--steps", 2, "--n-prompts", 2,
                            "--per-prompt", 2, "--seeds", 2, "--json", "--base", base.path, "--token", "[v]")
    assert code == 0, err
    assert "training steps 2 (given)" in err and "λA 0.5, λB 1.0" in err and "(tuned on the tiny base" in err
    table = json.loads(stdout)["table"]
    assert {"base", "round 1", "round 2 CLIP", "round 2 random"} <= set(table)
    for row in table.values():
        assert set(row) == {"clip_t", "clip_i", "style_acc", "content_acc", "leakage"}
        for mean, lo, hi in row.values():
            assert lo <= mean <= hi
    assert not list(tmp_path.glob(".report.html.candidates*"))  # the candidates' folder is gone with the run
    page = out.read_text()
    assert page.count("data:image/png;base64,") == 1 + len(table) and "<svg" in page
    assert "src=\"http" not in page and "href=\"http" not in page  # self-contained
    assert "in [v] style" in page  # --token replaces the style's descriptor in every caption
    # bad input: unknown style, no seeds to make an interval, non-html output; nothing written
    assert cli("report", "--style", "plaid", "--out", tmp_path / "a.html", "--base", base.path)[0] == 2
    assert cli("report", "--style", "lava", "--seeds", 1, "--out", tmp_path / "b.html", "--base", base.path)[0] == 2
    assert cli("report", "--style", "lava", "--token", " ", "--out", tmp_path / "c.html", "--base", base.path)[0] == 2
    assert not any((tmp_path / f).exists() for f in ("a.html", "b.html", "c.html"))

    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    from selenium.webdriver.common.by import By
    driver = chromium()
    try:
        driver.get(out.as_uri())
        rows = driver.find_elements(By.CSS_SELECTOR, "#table2 tr")
        assert len(rows) == 1 + len(table)
        images = driver.find_elements(By.TAG_NAME, "img")
        assert images and all(driver.execute_script("return arguments[0].naturalWidth", im) > 0 for im in images)
        assert driver.find_element(By.ID, "plot").size["width"] > 300
    finally:
        driver.quit()
