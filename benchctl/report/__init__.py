"""HTML reports: run folders → one self-contained plotly page (`benchctl report`).

The figures and tables live in load / overview / latency / timeline / internals / roofline / sweep / ablation; render.py
assembles them. Only the command is imported here: the CLI loads it on every start, plotly only when it runs.
"""

from benchctl.report.command import report_command

__all__ = ["report_command"]
