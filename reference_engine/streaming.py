"""A thread-safe streaming front for LLMEngine: one thread runs the step loop, each request gets a queue.

Only the loop thread touches the engine. Other threads (or an asyncio event loop) submit and abort through a
command queue and read their request's outputs from its own queue, so a server can stream tokens as they come.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Iterator

from reference_engine.llm_engine import LLMEngine
from reference_engine.sampling_params import SamplingParams
from reference_engine.sequence import RequestOutput

_END = object()


class RequestStream:
    """The outputs of one request, ending after the finished one. Iterate it (blocking) or `async for` it."""

    def __init__(self, request_id: str, loop: asyncio.AbstractEventLoop | None = None):
        self.request_id = request_id
        self._loop = loop
        self._queue: queue.Queue | asyncio.Queue = asyncio.Queue() if loop else queue.Queue()

    def _put(self, item: object) -> None:  # called from the loop thread
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        else:
            self._queue.put(item)

    def __iter__(self) -> Iterator[RequestOutput]:
        while (item := self._queue.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item

    async def __aiter__(self) -> AsyncIterator[RequestOutput]:
        while (item := await self._queue.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item


class StreamingEngine:
    """`with StreamingEngine(LLMEngine(dir)) as se: for out in se.submit("r1", "Hi", params): ...`"""

    def __init__(self, engine: LLMEngine):
        self.engine = engine
        self._commands: queue.Queue = queue.Queue()
        self._streams: dict[str, RequestStream] = {}
        self._stopping = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="reference-engine-loop", daemon=True)
        self._thread.start()

    def submit(self, request_id: str, prompt: str | list[int], params: SamplingParams | None = None,
               loop: asyncio.AbstractEventLoop | None = None) -> RequestStream:
        """Queue a request; its outputs arrive on the returned stream (bound to `loop` for `async for`)."""
        if self._error is not None or self._stopping:
            raise RuntimeError("the engine loop has stopped") from self._error
        stream = RequestStream(request_id, loop)
        self._commands.put(("add", request_id, prompt, params, stream))
        return stream

    async def generate(self, request_id: str, prompt: str | list[int],
                       params: SamplingParams | None = None) -> AsyncIterator[RequestOutput]:
        async for out in self.submit(request_id, prompt, params, asyncio.get_running_loop()):
            yield out

    def abort(self, request_id: str) -> None:
        self._commands.put(("abort", request_id))

    def close(self) -> None:
        self._stopping = True
        self._commands.put(("stop",))
        self._thread.join()
        self.engine.close()

    def __enter__(self) -> StreamingEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _handle(self, command: tuple) -> None:
        if command[0] == "add":
            _, request_id, prompt, params, stream = command
            try:
                self.engine.add_request(request_id, prompt, params)
            except ValueError as exc:
                stream._put(exc)
                stream._put(_END)
                return
            self._streams[request_id] = stream
        elif command[0] == "abort":
            self.engine.abort(command[1])

    def _run(self) -> None:
        try:
            while not self._stopping:
                # Block for work only when idle; between steps, take whatever commands have arrived.
                block = not self.engine.has_unfinished_requests()
                try:
                    command = self._commands.get(block=block)
                    while True:
                        if command[0] == "stop":
                            return
                        self._handle(command)
                        command = self._commands.get_nowait()
                except queue.Empty:
                    pass
                for out in self.engine.step() if self.engine.has_unfinished_requests() else []:
                    stream = self._streams.get(out.request_id)
                    if stream is None:
                        continue
                    stream._put(out)
                    if out.finished:
                        stream._put(_END)
                        del self._streams[out.request_id]
        except BaseException as exc:  # a bug in the engine: every waiting stream hears about it
            self._error = exc
            for stream in self._streams.values():
                stream._put(exc)
                stream._put(_END)
        finally:
            for stream in self._streams.values():
                stream._put(_END)
            self._streams.clear()
