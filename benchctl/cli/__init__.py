"""`benchctl`: one Typer app; each command group is a module of this package, thin over the library.

run (run.py) · show, compare (results.py) · backends, datasets (info.py) · regress (gate.py) · ab (ab.py) · sweep
(sweep.py) · serve, bench-client (serving.py) · engines install|list (engines.py) · import, tools install|list
(imports.py) · report, hwinfo, bench-attention, bench-gemm.
"""

from __future__ import annotations

import sys

import typer

from benchctl import hwinfo
from benchctl.cli import ab, gate, imports, info, results, run, serving, sweep
from benchctl.cli.engines import engines_app
from benchctl.cli.output import CLICK_ERROR, USER_ERRORS, err, error_line
from benchctl.kernelbench import bench_attention_command, bench_gemm_command
from benchctl.report import report_command

app = typer.Typer(
    add_completion=False,
    no_args_is_help=False,
    pretty_exceptions_enable=False,
    help="Benchmark LLM inference engines on one workload with one set of metric definitions.",
)
for module in (run, results, info, gate, ab, sweep, serving, imports):
    module.register(app)
app.add_typer(engines_app, name="engines")
app.command("report")(report_command)
app.command("hwinfo")(hwinfo.hwinfo_command)
app.command("bench-attention")(bench_attention_command)
app.command("bench-gemm")(bench_gemm_command)


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors are one line on stderr and exit code 2, never a traceback."""
    try:
        code = app(args=argv, standalone_mode=False)  # without standalone mode, typer.Exit comes back as a code
    except USER_ERRORS as e:
        error_line(str(e))
        return 2
    except CLICK_ERROR as e:  # bad option values, unknown options, missing arguments
        error_line(getattr(e, "format_message", e.__str__)())  # click's own wording of the problem
        return 2
    except typer.Exit as e:
        return e.exit_code
    except (typer.Abort, KeyboardInterrupt):
        err.print("benchctl: interrupted; finished records are kept in the run folder")
        return 130
    return code if isinstance(code, int) else 0


__all__ = ["app", "main"]

if __name__ == "__main__":
    sys.exit(main())
