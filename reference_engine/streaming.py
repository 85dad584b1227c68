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


class RequestFailed(RuntimeError):
    """The engine failed while it ran this request (an engine fault, not the request's mistake: a request the
    engine refuses raises ValueError). The loop goes on serving the others."""


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
        q = self._queue
        if not isinstance(q, queue.Queue):  # an asyncio queue's get() is a coroutine: a blocking read never ends
            raise TypeError(f"stream {self.request_id} is bound to an event loop: read it with `async for`")
        while (item := q.get()) is not _END:
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
        self.num_failed_steps = 0  # steps that raised (their requests failed; the loop went on)
        self._thread = threading.Thread(target=self._run, name="reference-engine-loop", daemon=True)
        self._thread.start()

    def submit(
        self,
        request_id: str,
        prompt: str | list[int],
        params: SamplingParams | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> RequestStream:
        """Queue a request; its outputs arrive on the returned stream (bound to `loop` for `async for`)."""
        if self._error is not None or self._stopping:
            raise RuntimeError("the engine loop has stopped") from self._error
        stream = RequestStream(request_id, loop)
        self._commands.put(("add", request_id, prompt, params, stream))
        return stream

    async def generate(
        self, request_id: str, prompt: str | list[int], params: SamplingParams | None = None
    ) -> AsyncIterator[RequestOutput]:
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
            except ValueError as exc:  # the engine refused the request (checked before it is added)
                stream._put(exc)
                stream._put(_END)
                return
            except Exception as exc:  # an engine fault: that request fails (whatever of it was added, aborted)
                self._quietly_abort(request_id)
                stream._put(self._failed(request_id, exc))
                stream._put(_END)
                return
            self._streams[request_id] = stream
        elif command[0] == "abort":
            self._quietly_abort(command[1])

    def _quietly_abort(self, request_id: str) -> None:
        try:
            self.engine.abort(request_id)
        except Exception:  # nothing more can be done for a request that cannot even be aborted
            pass

    @staticmethod
    def _failed(request_id: str, exc: Exception) -> RequestFailed:
        failure = RequestFailed(f"request {request_id} failed in the engine: {type(exc).__name__}: {exc}")
        failure.__cause__ = exc
        return failure

    def _step(self) -> list[RequestOutput]:
        """engine.step(); when it raises, the requests it was running fail (each stream hears why and they are
        aborted, freeing their KV blocks), and the loop goes on with the requests that arrive next."""
        try:
            return self.engine.step()
        except Exception as exc:
            self.num_failed_steps += 1
            for request_id, stream in list(self._streams.items()):
                self._quietly_abort(request_id)
                stream._put(self._failed(request_id, exc))
                stream._put(_END)
            self._streams.clear()
            return []  # the aborts' outputs come with the next step, for streams no longer listening

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
                for out in self._step() if self.engine.has_unfinished_requests() else []:
                    stream = self._streams.get(out.request_id)
                    if stream is None:
                        continue
                    stream._put(out)
                    if out.finished:
                        stream._put(_END)
                        del self._streams[out.request_id]
        except BaseException as exc:  # a bug in this loop itself: every waiting stream hears about it
            self._error = exc
            for stream in self._streams.values():
                stream._put(exc)
                stream._put(_END)
        finally:
            for stream in self._streams.values():
                stream._put(_END)
            self._streams.clear()
