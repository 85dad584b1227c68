"""The serving load client: a precomputed arrival schedule against any OpenAI-compatible server.

Requests leave at absolute times `t0 + arrival_s` (never one sleep per gap: that drifts, vLLM #21104), subject
to a --max-concurrency semaphore; `start_s` is taken when a request is actually sent, so a wait for a slot is
`queue_s`, not TTFT. Each response is streamed and every SSE line is timestamped as it is read; the client
records times and counts only, benchctl.metrics turns them into TTFT/TPOT/ITL/E2EL. Failures (HTTP status,
timeout, connection, malformed stream) become records with `error` set and a short kind in `extra.error_kind`;
the run goes on. Every request gets exactly one record: an exception nobody foresaw is that request's failure
(kind `client_error`, with its type and message), and a request left without a record at the end gets one.

Everything here runs on one asyncio loop and must stay cheap per chunk: payloads are serialised before t0,
records leave through `emit` (a queue put; the disk is another thread's job).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import aiohttp

from benchctl.serving.request import ENDPOINTS, ClientOptions, api_root, build_payload, request_timeout
from benchctl.serving.stream import MalformedStream, StreamAccumulator, build_record
from benchctl.workload import RequestSpec, Tokenizer


def run_event_loop(coro) -> None:
    """asyncio.run, on uvloop when it is installed (less per-chunk overhead: the client must not be the bottleneck)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    uvloop.run(coro)


def server_root(base_url: str) -> str:
    base = base_url.rstrip("/")
    return base.removesuffix("/v1")


def describe(e: BaseException) -> str:
    """`Type: message` (or just the type when the message is empty) of an exception, for a record's error."""
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


class LoadClient:
    def __init__(self, options: ClientOptions, tokenizer: Tokenizer | None = None):
        if options.endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {', '.join(ENDPOINTS)}, got {options.endpoint!r}")
        self.options = options
        self.tokenizer = tokenizer
        self.base_urls = (options.base_url, *options.extra_base_urls)
        self.urls = [api_root(u) + ENDPOINTS[options.endpoint] for u in self.base_urls]
        self._server_of: dict[str, int] = {}  # request id -> index into base_urls
        self._headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if options.api_key:
            self._headers["Authorization"] = f"Bearer {options.api_key}"
        self._session: aiohttp.ClientSession | None = None
        self._dispatcher: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()  # requests in flight (and turns waiting for their think time)
        self._interrupted: str | None = None  # the error of requests cut off in flight by interrupt()
        self.stop_reason: str | None = None
        self.peak_in_flight = 0
        self._in_flight = 0
        self._sent_ids: set[str] = set()
        self._followers: dict[str, RequestSpec] = {}  # previous turn's request id -> next turn
        self._answers: dict[str, str] = {}  # --history generated: answer texts the next turn sends back
        self._payloads: dict[str, bytes] = {}
        self._slots: asyncio.Semaphore | None = None
        self._recorded: set[str] = set()  # request ids emitted this run: exactly one record each
        self._start_s: dict[str, float] = {}  # request id -> when it was sent (an interrupted request's record)
        self.num_requests = 0

    @property
    def num_sent(self) -> int:
        return len(self._sent_ids)

    @property
    def num_records(self) -> int:
        """Records emitted by the last run(); equal to num_requests once it has returned."""
        return len(self._recorded)

    # -- lifecycle ----------------------------------------------------------------------------------------------

    async def open(self, connections: int) -> None:
        # No more in flight than connections, or a request would wait inside aiohttp after its start_s.
        connector = aiohttp.TCPConnector(
            limit=max(connections, 1), limit_per_host=0, ttl_dns_cache=None, keepalive_timeout=60
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=request_timeout(self.options.request_timeout_s),
            read_bufsize=1 << 16,
            auto_decompress=False,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def stop(self, reason: str) -> None:
        """Send nothing more (the server is gone); unsent requests are recorded as failed with `reason`."""
        self.stop_reason = reason
        if self._dispatcher is not None:
            self._dispatcher.cancel()

    def interrupt(self, reason: str = "run interrupted") -> None:
        """Stop now (Ctrl-C): nothing more is sent and requests in flight are cancelled; run() then returns, each
        request recorded as failed with "interrupted: reason" unless it had finished."""
        self._interrupted = f"interrupted: {reason}"
        self.stop(self._interrupted)
        for task in list(self._tasks):
            task.cancel()

    async def list_models(self) -> list[str]:
        """Model ids the server serves (GET /v1/models); raises aiohttp.ClientError when unreachable."""
        assert self._session is not None, "open() first"
        async with self._session.get(
            api_root(self.options.base_url) + "/models", headers=self._headers, timeout=aiohttp.ClientTimeout(total=30)
        ) as resp:
            if resp.status != 200:
                raise aiohttp.ClientResponseError(
                    resp.request_info, (), status=resp.status, message=(await resp.text())[:200]
                )
            data = await resp.json(content_type=None)
        return [m["id"] for m in data.get("data", []) if isinstance(m, dict) and "id" in m]

    async def warmup(self, requests: Sequence[RequestSpec], count: int) -> list[dict]:
        """`count` requests (cycling through `requests`) sent at once before the run; records not kept."""
        t0 = time.monotonic()
        chosen = [requests[i % len(requests)] for i in range(count)]
        if any(r.conversation_id is not None for r in chosen):
            # The conversation's own prompts would sit in the server's prefix cache before turn 0 is measured.
            chosen = [
                RequestSpec(f"warmup-{i}", [], f"Warm-up request {i}: count from one to twenty.", 16)
                for i in range(count)
            ]
        self.assign_servers(chosen)
        return list(await asyncio.gather(*(self._send_or_fail(r, build_payload(r, self.options), t0) for r in chosen)))

    # -- the run ------------------------------------------------------------------------------------------------

    async def run(self, requests: Sequence[RequestSpec], t0: float, emit: Callable[[dict], None]) -> None:
        """Send every request at t0 + arrival_s (time.monotonic clock); `emit` each finished record, exactly one
        per request (failures included)."""
        if self._session is None:
            await self.open(self.options.max_concurrency or len(requests))
        ordered = sorted(requests, key=lambda r: r.arrival_s)
        self._recorded, self._start_s = set(), {}
        self.num_requests = len(ordered)
        emit = self._once(emit)
        self.assign_servers(ordered)
        self._sent_ids = set()
        # A conversation's later turn is not on the schedule: it leaves think_time_s after its previous turn's answer.
        self._followers = {r.after: r for r in ordered if r.after is not None}
        self._answers = {}
        heads = [r for r in ordered if r.after is None]
        self._payloads = {r.request_id: build_payload(r, self.options) for r in ordered}
        tasks: set[asyncio.Task] = set()
        self._tasks = tasks
        self._interrupted = None
        self._dispatcher = asyncio.current_task()
        limit = self.options.max_concurrency
        self._slots = asyncio.Semaphore(limit) if limit else None
        cancelled = False
        try:
            await self._dispatch(heads, t0, emit, tasks)
        except asyncio.CancelledError:
            if self.stop_reason is None:  # cancelled from outside (Ctrl-C): record everything, then re-raise
                cancelled, self._dispatcher = True, None
                self.interrupt("cancelled")
        finally:
            self._dispatcher = None
        while tasks:  # followers start new tasks while earlier ones finish
            await asyncio.gather(*list(tasks), return_exceptions=True)
        for spec in ordered:
            if spec.request_id in self._recorded:
                continue
            if spec.request_id not in self._sent_ids:
                emit(self.unsent_record(spec, t0, self.stop_reason or "not sent"))
            elif self._interrupted:  # cancelled before its task ever ran
                emit(self.unsent_record(spec, t0, self._interrupted, "interrupted"))
            else:  # sent, yet nothing recorded it: a client bug, but the request is still accounted for
                emit(self.unsent_record(spec, t0, "client error: the request ended without a record", "client_error"))
        if cancelled:
            raise asyncio.CancelledError

    def _once(self, emit: Callable[[dict], None]) -> Callable[[dict], None]:
        """`emit`, noting each request id; a second record for the same request is dropped."""
        recorded = self._recorded

        def emit_once(record: dict) -> None:
            if record["request_id"] not in recorded:
                recorded.add(record["request_id"])
                emit(record)

        return emit_once

    def unsent_record(self, spec: RequestSpec, t0: float, reason: str, kind: str = "not_sent") -> dict:
        """The failed record of a request that was never sent (server gone, run stopped, client process died)."""
        return self._record(
            spec, None, StreamAccumulator(self.options.endpoint), time.monotonic() - t0, reason, None, kind=kind
        )

    def assign_servers(self, ordered: Sequence[RequestSpec]) -> None:
        """Round-robin in arrival order: with N servers, request i goes to server i % N."""
        self._server_of = {spec.request_id: i % len(self.urls) for i, spec in enumerate(ordered)}

    async def _dispatch(self, heads: list[RequestSpec], t0: float, emit, tasks: set[asyncio.Task]) -> None:
        for spec in heads:
            delay = t0 + spec.arrival_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._slots is not None:
                await self._slots.acquire()
            self._launch(spec, t0, emit, tasks)

    def _launch(self, spec: RequestSpec, t0: float, emit, tasks: set[asyncio.Task]) -> None:
        """Start one request (its concurrency slot already taken)."""
        task = asyncio.get_running_loop().create_task(self._one(spec, t0, emit, tasks))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        self._sent_ids.add(spec.request_id)

    async def _one(self, spec: RequestSpec, t0: float, emit: Callable[[dict], None], tasks: set[asyncio.Task]) -> None:
        self._in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        try:
            record = await self._send_or_fail(spec, self._payloads[spec.request_id], t0)
        except asyncio.CancelledError:  # stopped mid-flight (Ctrl-C): still this request's one record
            emit(
                self._record(
                    spec,
                    self._start_s.get(spec.request_id),
                    StreamAccumulator(self.options.endpoint),
                    time.monotonic() - t0,
                    self._interrupted or "interrupted: cancelled",
                    None,
                    kind="interrupted",
                )
            )
            raise
        finally:
            self._in_flight -= 1
            if self._slots is not None:
                self._slots.release()
        emit(record)
        follower = self._followers.pop(spec.request_id, None)
        answer = self._answers.pop(spec.request_id, "")
        if follower is not None and self.stop_reason is None:
            try:
                if follower.suffix_text is not None:  # --history generated: the answer this server gave goes back
                    self._splice_answer(spec, follower, answer)
                await self._follow(follower, time.monotonic() - t0, t0, emit, tasks)
            except Exception as e:  # noqa: BLE001 - the next turn could not be sent: it fails, with the reason
                if follower.request_id not in self._sent_ids:
                    emit(self.unsent_record(follower, t0, f"client error: {describe(e)}", "client_error"))

    def _splice_answer(self, previous: RequestSpec, follower: RequestSpec, answer: str) -> None:
        """The next turn's history ends with the generated answer instead of the recorded one."""
        follower.prompt = previous.prompt + answer + (follower.suffix_text or "")
        if previous.messages is not None and follower.messages is not None:
            follower.messages = [*previous.messages, {"role": "assistant", "content": answer}, follower.messages[-1]]
        self._payloads[follower.request_id] = build_payload(follower, self.options)

    async def _follow(self, spec: RequestSpec, answered_s: float, t0: float, emit, tasks: set[asyncio.Task]) -> None:
        """The next turn of a conversation: due think_time_s after the answer, then it queues for a slot like any
        request (its arrival_s becomes that due time, so a wait for a slot is queue time, not TTFT)."""
        spec.arrival_s = answered_s + spec.think_time_s
        delay = t0 + spec.arrival_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if self._slots is not None:
            await self._slots.acquire()
        if self.stop_reason is not None:
            if self._slots is not None:
                self._slots.release()
            return
        self._launch(spec, t0, emit, tasks)

    async def _send_or_fail(self, spec: RequestSpec, payload: bytes, t0: float) -> dict:
        """send(), where any exception it lets through is this request's failed record."""
        try:
            return await self.send(spec, payload, t0)
        except Exception as e:  # noqa: BLE001 - a client bug must cost one request, never its record
            return self.unsent_record(spec, t0, f"client error: {describe(e)}", "client_error")

    async def send(self, spec: RequestSpec, payload: bytes, t0: float) -> dict:
        """One streamed request; always returns a record (errors included)."""
        acc = StreamAccumulator(self.options.endpoint)
        headers = {**self._headers, "X-Request-Id": spec.request_id}
        server = self._server_of.get(spec.request_id, 0)
        error: str | None = None
        kind: str | None = None
        status: int | None = None
        start_s = self._start_s[spec.request_id] = time.monotonic() - t0
        try:
            assert self._session is not None, "open() first"
            async with self._session.post(self.urls[server], data=payload, headers=headers) as resp:
                status = resp.status
                if status != 200:
                    body = (await resp.read())[:300].decode("utf-8", errors="replace")
                    error, kind = f"HTTP {status}: {body}", "http_status"
                else:
                    await acc.consume(resp.content, t0)
                    if not acc.done:
                        error, kind = "stream ended before 'data: [DONE]'", "incomplete_stream"
                    elif not acc.token_times_s:  # an answer without a token has no TTFT: not a completed request
                        error, kind = "empty response: 'data: [DONE]' before any token", "empty_output"
        except MalformedStream as e:
            error, kind = f"malformed stream: {e}", e.kind
        except (asyncio.TimeoutError, TimeoutError):
            error = f"timeout: no complete response within {self.options.request_timeout_s:g} s"
            kind = "timeout"
        except aiohttp.ClientConnectorError as e:
            error, kind = describe(e), "connect"
        except aiohttp.ClientError as e:  # reset, disconnected, payload cut short mid-response
            error, kind = describe(e), "connection"
        except ValueError as e:  # aiohttp: a line longer than its buffer
            error, kind = f"malformed stream: {e}", "malformed_stream"
        except Exception as e:  # noqa: BLE001 - unforeseen: this request failed, the run goes on
            error, kind = f"client error: {describe(e)}", "client_error"
        try:
            follower = self._followers.get(spec.request_id)
            if follower is not None and follower.suffix_text is not None:
                self._answers[spec.request_id] = acc.text
            return self._record(spec, start_s, acc, time.monotonic() - t0, error, status, server, kind)
        except Exception as e:  # noqa: BLE001 - e.g. the tokenizer failed on the text: still one record
            return self._record(
                spec,
                start_s,
                StreamAccumulator(self.options.endpoint),
                time.monotonic() - t0,
                f"client error: recording the response failed: {describe(e)}",
                status,
                server,
                "client_error",
            )

    def _record(
        self,
        spec: RequestSpec,
        start_s: float | None,
        acc: StreamAccumulator,
        end_s: float,
        error: str | None,
        status: int | None,
        server: int | None = None,
        kind: str | None = None,
    ) -> dict:
        url = None
        if len(self.base_urls) > 1:  # which server of a load-balanced set answered
            url = self.base_urls[server if server is not None else self._server_of.get(spec.request_id, 0)]
        return build_record(spec, acc, start_s, end_s, error, kind, status, self.tokenizer, url)
