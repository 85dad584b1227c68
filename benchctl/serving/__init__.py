"""Serving mode: an OpenAI-compatible load client, launched engine servers, and the reference engine's server.

    benchctl run --mode serving --backend openai --base-url http://host:8000   # attach
    benchctl run --mode serving --backend reference                            # launch `benchctl serve`

Modules: client (schedule + streaming), stream (SSE chunk accounting), launch (server processes), scrape
(Prometheus series), run (the orchestration), reference_server + openai_api (`benchctl serve`), fake_server
(a deterministic server for tests and `benchctl bench-client`), bench (client overhead), commands (CLI).
"""
