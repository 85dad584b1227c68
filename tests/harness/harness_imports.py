"""What a benchctl command imports in its own process: `python -X importtime` in a subprocess, parsed.

The harness never imports an engine, torch or transformers (they run in worker and child processes); the
tests of that rule run a real command and read the interpreter's own import log.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile

ENGINE_MODULES = ("torch", "transformers", "vllm", "llama_cpp", "exllamav2", "reference_engine")
_IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", re.MULTILINE)


def run_with_importtime(
    code: str, env: dict[str, str] | None = None, timeout_s: float = 600
) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run `python -X importtime -c code`; (the finished process, every module its own process imported).

    The modules are those of the import log and those in sys.modules at exit: importlib.import_module (how
    backends are loaded) does not write the log line of the module it imports itself."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "modules.json")
        at_exit = (
            f"import atexit, json, sys\n"
            f"atexit.register(lambda: open({path!r}, 'w').write(json.dumps(sorted(sys.modules))))\n"
        )
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", at_exit + code],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env={**os.environ, **(env or {})},
        )
        with open(path) as f:
            at_end = set(json.load(f))
    return proc, set(_IMPORT_LINE.findall(proc.stderr)) | at_end


def engine_modules(modules: set[str]) -> list[str]:
    """The engine, torch and transformers modules among `modules`."""
    return sorted(m for m in modules if m.split(".")[0] in ENGINE_MODULES)
