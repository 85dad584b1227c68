"""benchctl import across tools: detection, files no reader takes, and imported runs in compare, report and regress.

Each tool's reader has its own test file (test_import_vllm.py, test_import_guidellm.py, test_import_aiperf.py).
"""

from __future__ import annotations

import pytest

from benchctl import importers
from benchctl.importers import ImportFormatError
from tests.harness.import_fixtures import VLLM, write_json


@pytest.mark.parametrize(
    "make, tool, message",
    [
        (
            lambda tmp: write_json(tmp / "other.json", {"results": [1, 2], "tool": "llmperf"}),
            None,
            "not a result file of vllm bench serve",
        ),
        (lambda tmp: tmp / "missing.json", None, "no such file"),
        (lambda tmp: VLLM, "genai-perf", "unknown tool 'genai-perf'; choose one of vllm"),
        (lambda tmp: write_json(tmp / "other.json", {"date": 1}), "vllm", "is not a vLLM `bench serve` result"),
        (lambda tmp: tmp, None, "a folder holding no result file benchctl reads"),
    ],
)
def test_a_file_no_reader_takes_is_one_clear_line(tmp_path, make, tool, message):
    out = tmp_path / "results"
    with pytest.raises(ImportFormatError) as info:
        importers.import_result(make(tmp_path), tool=tool, output_dir=out)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not out.exists()  # checked before any run folder is made


def test_a_file_not_json_at_all(tmp_path):
    path = tmp_path / "log.txt"
    path.write_text("Serving Benchmark Result\nSuccessful requests: 12\n")  # vLLM's console output, not its file
    with pytest.raises(ImportFormatError, match="not a result file of"):
        importers.detect_tool(path)
    assert importers.detect_tool(VLLM) == "vllm"  # the real file, by contrast, is


def test_a_reader_asked_for_the_wrong_tools_file_says_so(tmp_path):
    with pytest.raises(ImportFormatError, match="not a guidellm benchmarks report"):
        importers.import_result(VLLM, tool="guidellm", output_dir=tmp_path)


def test_imported_runs_work_in_compare_report_and_regress(tmp_path):
    import copy
    import json

    from benchctl import regress, store
    from benchctl.console import compare_rows
    from benchctl.report.load import load
    from benchctl.report.render import render_html
    from tests.harness.import_fixtures import AIPERF, GUIDELLM, import_one

    dirs = [import_one(p, tmp_path / "all")[0] for p in (VLLM, GUIDELLM, AIPERF)]
    runs = [store.load_run(d) for d in dirs]
    rows = {r["metric"]: r["values"] for r in compare_rows(runs, ceilings=[None] * 3)}
    assert all(v is not None for v in rows["ttft_p99_ms"]) and all(v is not None for v in rows["output_tok_s"])
    html = render_html([load(d) for d in dirs], None)
    assert all(d.name in html for d in dirs)
    # regress: three repeats a side (the vLLM result, its TTFTs and their summary scaled as if measured again)
    data = json.loads(VLLM.read_text())
    for side, scale in (("base", 1.0), ("cand", 1.3)):
        for k in range(3):
            variant = copy.deepcopy(data)
            factor = scale * (1 + 0.01 * k)
            variant["ttfts"] = [t * factor for t in data["ttfts"]]
            variant["latencies"] = [lat + t * (factor - 1) for lat, t in zip(data["latencies"], data["ttfts"])]
            variant["mean_ttft_ms"] = data["mean_ttft_ms"] * factor
            importers.import_result(write_json(tmp_path / f"{side}{k}.json", variant), output_dir=tmp_path / side)
    result = regress.compare_sides(
        str(tmp_path / "base"), str(tmp_path / "cand"), [regress.parse_gate("ttft_p50_ms:10%")]
    )
    assert result["verdicts"][0]["verdict"] == "regression"


def test_cli_import_prints_the_side_by_side_and_refuses_bad_files_with_exit_2(tmp_path):
    import json

    import typer
    from typer.testing import CliRunner

    from benchctl.cli import imports

    app = typer.Typer()
    imports.register(app)
    app.callback()(lambda: None)  # a group, as benchctl's app is: `import` stays a subcommand
    ok = CliRunner().invoke(app, ["import", str(VLLM), "--output-dir", str(tmp_path)])
    assert ok.exit_code == 0, ok.output
    assert "vllm not recorded" in " ".join(ok.output.split()) and "ttft_mean_ms" in ok.output
    [run_dir] = [p for p in tmp_path.iterdir() if (p / "run.json").is_file()]
    assert run_dir.name in ok.output  # the side-by-side table names the run it made
    bad = write_json(tmp_path / "bad.json", {k: v for k, v in json.loads(VLLM.read_text()).items() if k != "ttfts"})
    refused = CliRunner().invoke(app, ["import", str(bad), "--output-dir", str(tmp_path / "x")])
    assert refused.exit_code == 2 and "with --save-detailed" in refused.output and not (tmp_path / "x").exists()


def test_show_of_an_imported_run_puts_the_tools_figures_beside_benchctls(tmp_path, capsys):
    from benchctl.cli import main

    assert main(["import", str(VLLM), "--output-dir", str(tmp_path)]) == 0
    [run_dir] = [p for p in tmp_path.iterdir() if (p / "run.json").is_file()]
    capsys.readouterr()
    assert main(["show", str(run_dir)]) == 0
    shown = capsys.readouterr().out
    assert f"{run_dir.name}: vllm" in shown and "mean_ttft_ms" in shown  # the tool's own name beside ours
    assert main(["import", str(tmp_path / "missing.json"), "--output-dir", str(tmp_path)]) == 2
