"""Run one benchmark: workload -> backend worker (offline) or server (serving) -> records on disk -> run.json.

The run never special-cases an engine: it reads the backend's capabilities, and the worker (or the engine's
own server) does the engine-specific work in its own process. Modules import downward only:
config, interrupts <- prepare, sink <- folder <- offline, scraping <- serving <- dispatch.
"""

from benchctl.run.config import Progress, RunConfig, RunFailed, parse_engine_args
from benchctl.run.dispatch import run_benchmark
from benchctl.run.interrupts import Interrupted

__all__ = ["Interrupted", "Progress", "RunConfig", "RunFailed", "parse_engine_args", "run_benchmark"]
