"""The report in a real browser: headless Chromium (Debian's `chromium`) driven by Playwright.

Every expected figure must render with data, the page must log no errors and fetch nothing from the
network; the screenshot is kept in the test's tmp dir and copied to $BENCHCTL_ARTIFACTS_DIR when set.
Skipped only when chromium or playwright is missing and CI is not set: under CI it must run.

BENCHCTL_REPORT_RUNS="RUN_DIR [RUN_DIR...]" also renders a report on those (real) runs and keeps its screenshot.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest
from report_fixtures import make_hwinfo, make_model, make_run

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MISSING = [
    what
    for what, ok in (
        ("/usr/bin/chromium", CHROMIUM.exists()),
        ("playwright (pip install playwright)", importlib.util.find_spec("playwright")),
    )
    if not ok
]

pytestmark = pytest.mark.skipif(
    bool(MISSING) and not os.environ.get("CI"),
    reason=f"needs {', '.join(MISSING)} (apt-get install -y chromium; pip install playwright)",
)

# Per plotly graph: its div id, the .main-svg layers drawn, and the number of points in each trace.
FIGURES_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(el => ({
    id: el.id,
    svgs: el.querySelectorAll('.main-svg').length,
    traces: (el.data || []).length,
    points: (el._fullData || []).map(t => t._length || 0),
}))"""


def render_in_browser(html: Path, screenshot: Path, user_data_dir: Path, expected: int) -> dict:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    errors, fetched = [], []
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(user_data_dir),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: fetched.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
            page.goto(html.as_uri(), wait_until="load", timeout=120_000)
            try:
                page.wait_for_function(
                    f"() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= {expected}",
                    timeout=120_000,
                )
            except PlaywrightTimeout:
                pytest.fail(f"figures did not render; page errors: {errors}")
            figures = page.evaluate(FIGURES_JS)
            total_svgs = page.evaluate("() => document.querySelectorAll('.plotly .main-svg').length")
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            context.close()
    artifacts = os.environ.get("BENCHCTL_ARTIFACTS_DIR")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(artifacts) / screenshot.name)
    return {"figures": {f["id"]: f for f in figures}, "total_svgs": total_svgs, "errors": errors, "fetched": fetched}


def write_report(runs: list[Path], out: Path, output_dir: Path) -> list[str]:
    from benchctl import hwinfo
    from benchctl.report.load import load_all
    from benchctl.report.render import figure_ids, render_html

    data = load_all([str(r) for r in runs], output_dir)
    out.write_text(render_html(data, hwinfo.load_cached()), encoding="utf-8")
    return figure_ids(data, hwinfo.load_cached())


def check_rendered(result: dict, expected_ids: list[str]) -> None:
    assert result["errors"] == []
    assert result["fetched"] == []  # self-contained: nothing from the network
    assert set(result["figures"]) == set(expected_ids)
    for div_id in expected_ids:
        fig = result["figures"][div_id]
        assert fig["svgs"] >= 2, f"{div_id} has no plot layers"
        assert fig["traces"] >= 1 and sum(fig["points"]) > 0, f"{div_id} has no data: {fig}"
    assert result["total_svgs"] >= 2 * len(expected_ids)


def test_report_renders_every_figure_in_chromium(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHCTL_CACHE_DIR", str(tmp_path / "cache"))
    make_hwinfo(tmp_path / "cache")
    model = make_model(tmp_path / "model")
    runs = [
        make_run(tmp_path / "runs", "run-ref-2", rate=2.0, model_dir=model, n=10),
        make_run(tmp_path / "runs", "run-ref-4", rate=4.0, model_dir=model, n=10, slos_ms={"ttft": 300}),
        make_run(tmp_path / "runs", "run-hf", backend="hf", model_dir=model, n=10, steps=False),
    ]
    html = tmp_path / "report.html"
    expected = write_report(runs, html, tmp_path / "runs")
    assert expected == [
        "fig-throughput",
        "fig-latency-cdf",
        "fig-timeline",
        "fig-concurrency",
        "fig-engine-timeseries",
        "fig-step-breakdown",
        "fig-step-times",
        "fig-roofline",
        "fig-sweep-1",
    ]

    result = render_in_browser(
        html, tmp_path / "report-fixture-screenshot.png", tmp_path / "chromium-profile", len(expected)
    )

    check_rendered(result, expected)
    figures = result["figures"]
    assert figures["fig-throughput"]["points"] == [3, 3, 3]  # one bar per run in each of the three panels
    assert figures["fig-latency-cdf"]["traces"] == 3 * 4  # runs x (TTFT, TPOT, ITL, E2EL)
    assert figures["fig-timeline"]["points"] == [10] * 9  # runs x (queue, prefill, decode), 10 requests each
    assert figures["fig-step-breakdown"]["points"] == [2] * 5  # the two runs with steps x 5 parts
    assert (tmp_path / "report-fixture-screenshot.png").stat().st_size > 20_000


@pytest.mark.skipif(not os.environ.get("BENCHCTL_REPORT_RUNS"), reason="set BENCHCTL_REPORT_RUNS to real run folders")
def test_report_on_real_runs_in_chromium(tmp_path):
    runs = [Path(p) for p in os.environ["BENCHCTL_REPORT_RUNS"].split()]
    html = tmp_path / "report.html"
    expected = write_report(runs, html, Path("results"))
    result = render_in_browser(
        html, tmp_path / "report-real-runs-screenshot.png", tmp_path / "chromium-profile", len(expected)
    )
    check_rendered(result, expected)
