"""The reference engine's OpenAI-compatible server, beside its adapter (backends/reference.py).

    python -P -m backends.reference_server --model-dir DIR --model-name NAME [--port 8000] [--engine-arg K=V ...]

It runs in the engine's interpreter, never in the harness: `benchctl serve` resolves the model and runs it in the
foreground; `benchctl run --mode serving --backend reference` launches it from the backend's ServerSpec.
Modules: openai_api (the wire format: validation and bodies, pure functions), app (the FastAPI routes over a
reference_engine.StreamingEngine), __main__ (the command line).
"""
