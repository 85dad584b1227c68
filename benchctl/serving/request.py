"""What one request of the load client is on the wire: its options, URL, API key and JSON body.

Split from benchctl.serving.client (the asyncio machinery that sends it) by concept, and to keep both
under 400 lines: a dataclass and pure functions.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from benchctl.workload import RequestSpec

ENDPOINTS = {"completions": "/completions", "chat": "/chat/completions"}


@dataclass(slots=True)
class ClientOptions:
    base_url: str  # http://host:port or http://host:port/v1
    model_name: str
    endpoint: str = "completions"  # completions | chat
    api_key: str | None = None
    request_timeout_s: float | None = 600.0  # inf or None: no timeout
    max_concurrency: int | None = None
    temperature: float = 0.0  # greedy, as vLLM's benchmark and benchctl's offline runs
    extra_base_urls: tuple[str, ...] = ()  # more servers: requests go round-robin over all of them


def api_root(base_url: str) -> str:
    """The URL the OpenAI routes hang off: `.../v1`, whether or not the user wrote it."""
    base = base_url.rstrip("/")
    return base if base.endswith("/v1") else base + "/v1"


def effective_api_key(
    explicit: str | None, from_env: str | None, base_url: str | Sequence[str] | None
) -> tuple[str | None, str | None]:
    """(the key to send, a warning to print once). A key given with --api-key goes wherever the user sent it;
    $OPENAI_API_KEY only over https or to this machine (loopback, or a server benchctl launches: base_url
    None), never in clear text to another host the user may not have meant it for."""
    if explicit:
        return explicit, None
    if not from_env or base_url is None:
        return from_env or None, None
    urls = [base_url] if isinstance(base_url, str) else list(base_url)
    exposed = [u for u in urls if not _private_to_key(u)]
    if not exposed:
        return from_env, None
    return None, (
        f"$OPENAI_API_KEY is not sent to {', '.join(exposed)}: plain http to a host other than this "
        f"machine; give --api-key to send a key there"
    )


def _private_to_key(url: str) -> bool:
    """https, or a loopback host (localhost, 127.0.0.0/8, ::1)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost" or host.endswith(".localhost")
    return parts.scheme.lower() == "https" or loopback


def request_timeout(seconds: float | None) -> aiohttp.ClientTimeout:
    """The per-request limit; inf or None is none at all (aiohttp would fail every request on ceil(inf))."""
    if seconds is None or math.isinf(seconds):
        return aiohttp.ClientTimeout(total=None, sock_read=None)
    return aiohttp.ClientTimeout(total=seconds)


def build_payload(spec: RequestSpec, options: ClientOptions) -> bytes:
    """The request body. `min_tokens` + `ignore_eos` (vLLM extensions, also honoured by benchctl's server) make
    the output length the workload's; `continuous_usage_stats` lets servers that know it reveal tokens per chunk."""
    body: dict = {
        "model": options.model_name,
        "max_tokens": spec.output_len,
        "min_tokens": spec.output_len,
        "ignore_eos": True,
        "temperature": options.temperature,
        "stream": True,
        "stream_options": {"include_usage": True, "continuous_usage_stats": True},
    }
    if options.endpoint == "chat":
        body["messages"] = spec.messages or [{"role": "user", "content": spec.prompt}]
        body["max_completion_tokens"] = spec.output_len
    else:
        body["prompt"] = spec.prompt
    return json.dumps(body, separators=(",", ":")).encode()
