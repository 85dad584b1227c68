"""What a benchctl command imports in its own process: `python -X importtime` in a subprocess, parsed.

The harness never imports an engine, torch or transformers (they run in worker and child processes); the
tests of that rule run a real command and read the interpreter's own import log.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

ENGINE_MODULES = ("torch", "transformers", "vllm", "llama_cpp", "exllamav2", "reference_engine")
_IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", re.MULTILINE)


def run_with_importtime(code: str, env: dict[str, str] | None = None,
                        timeout_s: float = 600) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run `python -X importtime -c code`; (the finished process, every module its own process imported)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                          timeout=timeout_s, env={**os.environ, **(env or {})})
    return proc, set(_IMPORT_LINE.findall(proc.stderr))


def engine_modules(modules: set[str]) -> list[str]:
    """The engine, torch and transformers modules among `modules`."""
    return sorted(m for m in modules if m.split(".")[0] in ENGINE_MODULES)
