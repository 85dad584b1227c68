"""Serving mode's client side: an OpenAI-compatible load client, the engine servers it launches, their metrics.

    benchctl run --mode serving --backend openai --base-url http://host:8000   # attach
    benchctl run --mode serving --backend reference                            # launch the engine's server

Modules: client (schedule + streaming), stream (SSE chunk accounting), shards (the client over several
processes), launch (server processes), scrape (Prometheus series), fake_server (a deterministic server for tests
and `benchctl bench-client`), bench (the client's own overhead). The run itself is benchctl.run.serving; the
reference engine's server is backends/reference_server, beside its adapter.
"""
