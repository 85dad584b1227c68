"""llama-cpp-python's OpenAI server as benchctl launches it: `python -m backends.llamacpp_server ARGS` runs
`python -m llama_cpp.server ARGS` with one change. Its starlette-context RequestIdPlugin answers HTTP 400 (with an
empty body) to every request whose X-Request-Id header is not a UUID, and benchctl's load client names each request
there (`req-00012`); the plugin is made to take any id, as vLLM's and the reference server do.

Runs in the llamacpp managed environment (with the package's `server` extra), never in the harness.
"""

from __future__ import annotations

import starlette_context.plugins as plugins


class AnyRequestId(plugins.RequestIdPlugin):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("validate", False)
        super().__init__(*args, **kwargs)


plugins.RequestIdPlugin = AnyRequestId  # before llama_cpp.server.app imports it

if __name__ == "__main__":
    from llama_cpp.server.__main__ import main

    main()
