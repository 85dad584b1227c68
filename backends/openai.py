"""Any OpenAI-compatible server the user already runs (vLLM, SGLang, TGI, llama.cpp, a hosted API).

Serving mode only, and attach only: `benchctl run --mode serving --backend openai --base-url URL`. There is no
worker and nothing to launch; the load client (benchctl.serving.client) is the whole backend.
"""

from __future__ import annotations

from benchctl.backend import server_backend

BACKEND = server_backend("openai", "an OpenAI-compatible server at --base-url (serving mode, attach only)", None)
