"""The reference server survives any single request: its app (backends/reference_server/app.py) on a scripted
engine (tests/scripted_engine.py) behind a real uvicorn, so each rule is checked in a second, without a model."""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
import uvicorn
from scripted_engine import POISON, ScriptedEngine

from backends.reference_server.app import ServerState, create_app
from benchctl.serving.launch import free_port
from reference_engine.streaming import StreamingEngine

API_KEY = "k3y-for-tests"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
MAX_BODY_BYTES = 4096


@pytest.fixture
def server(model_dir):
    """(base url, scripted engine, streaming engine): 20 ms per step, a 4 KiB body limit, an API key."""
    engine = ScriptedEngine(step_s=0.02)
    se = StreamingEngine(engine)
    app = create_app(ServerState(se, "scripted", model_dir, {}, API_KEY, MAX_BODY_BYTES))
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    while not uv.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", engine, se
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
        se.close()


def call(url: str, body: bytes | dict | None = None, headers: dict | None = None) -> tuple[int, object]:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={**AUTH, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            status, raw = resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read().decode()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def metric(base: str, name: str) -> float:
    _, text = call(base + "/metrics")
    return float(re.search(rf"^reference_engine:{name}\{{[^}}]*\}} (\S+)$", text, re.MULTILINE).group(1))


def assert_still_serving(base: str) -> None:
    assert call(base + "/health")[0] == 200
    status, body = call(base + "/v1/completions", {"prompt": [1, 2], "max_tokens": 3})
    assert status == 200 and body["usage"]["completion_tokens"] == 3, body


@pytest.mark.parametrize(
    "body, param, fragment",
    [
        ({"temperature": 1, "top_p": 0.5, "top_k": 2**70}, "top_k", "'top_k' must be an integer in [-1, 2147483647]"),
        ({"seed": 2**70}, "seed", "'seed' must be an integer in [-9223372036854775808, 9223372036854775807]"),
        ({"seed": -(2**63) - 1}, "seed", "'seed' must be an integer"),
        (b'{"prompt": [1], "temperature": NaN}', None, "malformed JSON: NaN is not a JSON number"),
        (b'{"prompt": [1], "top_p": Infinity}', None, "malformed JSON: Infinity is not a JSON number"),
        (b'{"prompt": [1], "temperature": -Infinity}', None, "malformed JSON: -Infinity is not a JSON number"),
        (b'{"prompt": [1], "temperature": 1e999}', None, "malformed JSON: 1e999 is out of range for a number"),
        ({"temperature": True}, "temperature", "'temperature' must be int or float, got a boolean"),
        ({"top_k": False}, "top_k", "'top_k' must be int, got a boolean"),
        ({"temperature": 2.5}, "temperature", "'temperature' must be a number in [0, 2], got 2.5"),
        ({"temperature": -0.1}, "temperature", "'temperature' must be a number in [0, 2]"),
        ({"temperature": 1e-9}, "temperature", "'temperature' must be 0 (greedy) or in [1e-05, 2]"),
        ({"top_p": 0}, "top_p", "'top_p' must be a number in (0, 1], got 0"),
        ({"top_p": 1.5}, "top_p", "'top_p' must be a number in (0, 1]"),
        ({"top_k": -2}, "top_k", "'top_k' must be an integer in [-1, 2147483647], got -2"),
        ({"top_k": 1.5}, "top_k", "'top_k' must be int, got float"),
        ({"min_tokens": -1}, "min_tokens", "'min_tokens' must be an integer in [0, 2147483647]"),
        ({"min_tokens": 5, "max_tokens": 2}, None, "min_tokens must be in [0, max_tokens]"),
        ({"max_tokens": 2**70}, "max_tokens", "maximum context length is 256 tokens"),
    ],
)
def test_a_bad_sampling_field_is_a_json_400_and_the_engine_goes_on(server, body, param, fragment):
    base, engine, _ = server
    payload = body if isinstance(body, bytes) else {"prompt": [1, 2], **body}
    status, got = call(base + "/v1/completions", payload)
    assert status == 400 and got["error"]["type"] == "invalid_request_error" and got["error"]["param"] == param
    assert fragment in got["error"]["message"]
    assert engine.requests == {} and engine.aborted == []  # it never reached the engine
    assert_still_serving(base)


def test_a_request_the_engine_fails_is_a_500_for_it_alone(server):
    base, engine, se = server
    status, body = call(base + "/v1/completions", {"prompt": POISON, "max_tokens": 4})
    assert status == 500 and body["error"]["type"] == "server_error"
    assert "ValueError: Overflow when unpacking long long" in body["error"]["message"]
    status, raw = call(base + "/v1/completions", {"prompt": POISON, "max_tokens": 4, "stream": True})
    events = [line[6:] for line in raw.splitlines() if line.startswith("data: ")]
    assert status == 200 and len(events) == 1 and json.loads(events[0])["error"]["code"] == 500
    assert_still_serving(base)
    assert metric(base, "request_failed_total") == 2 and metric(base, "num_failed_steps_total") == 2
    assert metric(base, "request_success_total") == 1 and se._thread.is_alive()


def test_an_aborted_non_streaming_request_is_not_a_success(server):
    base, engine, _ = server
    body = json.dumps({"prompt": [1, 2], "max_tokens": 200}).encode()  # 200 steps of 20 ms: ~4 s
    with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1]))) as sock:
        sock.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {API_KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        while not engine.requests:
            time.sleep(0.01)
    for _ in range(200):  # the app notices the disconnect, the engine aborts between steps
        if metric(base, "request_aborted_total") == 1 and not engine.requests:
            break
        time.sleep(0.05)
    assert len(engine.aborted) == 1 and metric(base, "request_aborted_total") == 1
    assert metric(base, "request_success_total") == 0 and metric(base, "request_failed_total") == 0


def test_a_body_over_the_limit_is_a_413(server):
    base, engine, _ = server
    big = json.dumps({"prompt": "x" * MAX_BODY_BYTES}).encode()
    status, body = call(base + "/v1/completions", big)
    assert status == 413 and "larger than 4096 bytes" in body["error"]["message"] and body["error"]["code"] == 413
    host, port = base.rsplit("/", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)  # no Content-Length: counted while read
    conn.request("POST", "/v1/completions", body=iter([big[:3000], big[3000:]]), headers=AUTH, encode_chunked=True)
    resp = conn.getresponse()
    assert resp.status == 413 and "larger than 4096 bytes" in json.loads(resp.read())["error"]["message"]
    conn.close()
    assert engine.requests == {}
    assert_still_serving(base)


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-key-for-", f"Bearer {API_KEY[:-1]}", f"Bearer {API_KEY}x", API_KEY, "Bearer k3y-för-tests"],
)
def test_a_wrong_or_missing_api_key_is_a_401(server, header):
    base, _, _ = server
    headers = {"Authorization": header} if header is not None else {}
    request = urllib.request.Request(base + "/v1/models", headers=headers)
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=30)
    assert info.value.code == 401 and json.loads(info.value.read())["error"]["type"] == "authentication_error"
    assert call(base + "/v1/models")[1]["data"][0]["id"] == "scripted"  # the right key
    with urllib.request.urlopen(base + "/health", timeout=30) as resp:  # health needs none
        assert resp.status == 200
