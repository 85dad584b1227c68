"""The fake server with a capacity: SLOTS requests stream at once, the others wait in arrival order for a slot.

Each request, once it has a slot, streams exactly as benchctl.serving.fake_server's (first chunk TTFT after it got
the slot, then one chunk per ITL), so a request's TTFT as the client sees it is its wait for a slot plus TTFT:
with at most SLOTS streams in flight it is TTFT, with more it grows by whole request durations. The server can
serve SLOTS / (TTFT + (N - 1) ITL) requests of N tokens per second; past that its queue grows without bound.

Run: python tests/harness/fakes_serving/slot_server.py --slots K --ttft-ms T --itl-ms I   (prints "listening on P")
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from pathlib import Path

from aiohttp import web

from benchctl.serving.fake_server import FakeServer


class SlotServer(FakeServer):
    def __init__(self, slots: int, **kwargs):
        super().__init__(**kwargs)
        self.slots = slots
        self._free: asyncio.Semaphore | None = None

    async def completions(self, request: web.Request) -> web.StreamResponse:
        if self._free is None:  # made on the server's own loop
            self._free = asyncio.Semaphore(self.slots)
        async with self._free:  # asyncio's semaphore wakes its waiters in the order they came
            return await super().completions(request)


class SlotServerProcess:
    """slot_server.py on a free port, as a context manager that always stops it."""

    def __init__(self, slots: int, ttft_ms: float, itl_ms: float):
        script = Path(__file__).resolve()
        self.proc = subprocess.Popen(
            [sys.executable, str(script), "--slots", str(slots), "--ttft-ms", str(ttft_ms), "--itl-ms", str(itl_ms)],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"slot server did not start: {line!r}")
        self.base_url = f"http://127.0.0.1:{int(line.split()[-1])}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> SlotServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slots", type=int, required=True)
    parser.add_argument("--ttft-ms", type=float, default=0.0)
    parser.add_argument("--itl-ms", type=float, default=0.0)
    args = parser.parse_args()
    server = SlotServer(args.slots, ttft_ms=args.ttft_ms, itl_ms=args.itl_ms, spin_us=300, keep_timings=False)

    async def serve() -> None:
        runner = web.AppRunner(server.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        print(f"listening on {runner.addresses[0][1]}", flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
