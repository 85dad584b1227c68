"""The reference server's command line: build the engine, serve until SIGINT/SIGTERM (see the package docstring).

The API key comes from $BENCHCTL_API_KEY, not argv (a process list shows argv to every user of the machine).
A bad --engine-arg is one line and exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from backends.reference_server.app import DEFAULT_MAX_BODY_BYTES, SAMPLING_ENGINE_ARGS, ServerState, create_app
from backends.reference_server.openai_api import parse_sampling

API_KEY_ENV = "BENCHCTL_API_KEY"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m backends.reference_server",
        description="The reference engine behind an OpenAI-compatible HTTP API.",
    )
    parser.add_argument("--model-dir", required=True, type=Path, help="HF folder (config.json + safetensors)")
    parser.add_argument("--model-name", required=True, help="the name clients send as `model`")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--engine-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="engine option (repeatable); temperature/top_p/top_k set request defaults",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES,
        help="request bodies larger than this get 413 (default 8 MiB)",
    )
    parser.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="exit when the process that started this one dies (benchctl sets it)",
    )
    return parser.parse_args(argv)


def build_state(
    model_dir: Path,
    model_name: str,
    api_key: str | None,
    engine_args: dict[str, str],
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> ServerState:
    """The engine and its server state; ValueError for an engine arg the engine (or, for the request defaults
    temperature/top_p/top_k, the API's own bounds) refuses."""
    import torch

    from backends._common import convert, torch_threads
    from reference_engine import LLMEngine, StreamingEngine

    args = {k: convert(v) for k, v in engine_args.items()}
    defaults = parse_sampling({k: args.pop(k) for k in SAMPLING_ENGINE_ARGS if k in args})
    torch.set_num_threads(torch_threads())
    engine = LLMEngine(str(model_dir), **args)
    engine.stats.keep_steps = False  # a server runs for long: counters only
    return ServerState(StreamingEngine(engine), model_name, Path(model_dir), defaults, api_key, max_body_bytes)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    engine_args = {}
    for pair in args.engine_arg:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            print(f"benchctl: error: --engine-arg expects KEY=VALUE, got {pair!r}", file=sys.stderr)
            return 2
        engine_args[key.strip()] = value.strip()
    if args.exit_with_parent:
        from benchctl.worker.child import exit_when_orphaned

        exit_when_orphaned()
    try:
        state = build_state(
            args.model_dir, args.model_name, os.environ.get(API_KEY_ENV) or None, engine_args, args.max_body_bytes
        )
    except ValueError as e:  # the engine (or the API's bounds) refused an --engine-arg
        print(f"benchctl: error: reference engine: {e}", file=sys.stderr)
        return 2
    import uvicorn

    try:
        uvicorn.run(
            create_app(state),
            host=args.host,
            port=args.port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
        )
    finally:
        state.se.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
