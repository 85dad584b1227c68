"""The server's metrics beside a serving run: a scraper process sampling /metrics about once a second
(benchctl.serving.scrape), and one last sample after the last request."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from benchctl.serving.scrape import API_KEY_ENV, parse_exposition
from benchctl.worker.children import die_with_parent
from benchctl.worker.host import REPO_ROOT


def start_scraper(url: str, out: Path, t0: float, api_key: str | None) -> subprocess.Popen | None:
    """Only when the URL answers with a Prometheus exposition; the scraper is its own process."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as resp:
            if resp.status != 200:
                return None
    except (urllib.error.URLError, OSError):
        return None
    env = {**os.environ, **({API_KEY_ENV: api_key} if api_key else {})}
    # benchctl from this checkout, never from the current directory (`-m` would put it first on sys.path)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env.setdefault("PYTHONSAFEPATH", "1")
    return subprocess.Popen(
        [sys.executable, "-m", "benchctl.serving.scrape", url, str(out), "--t0", repr(t0)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        env=env,
        preexec_fn=die_with_parent(signal.SIGTERM),
    )  # SIGTERM: it stops after a sample


def final_scrape(url: str, out: Path, t0: float, api_key: str | None) -> None:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    t = time.monotonic()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as resp:
            sample = {
                "t_s": round(t - t0, 6),
                "final": True,
                "metrics": parse_exposition(resp.read().decode("utf-8", errors="replace")),
            }
    except (urllib.error.URLError, OSError):
        return
    with open(out, "a", encoding="utf-8") as f:
        f.write(json.dumps(sample, separators=(",", ":")) + "\n")


def stop_scraper(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
