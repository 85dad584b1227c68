"""The process boundary between the harness and an engine.

Worker-side modules (`protocol`, `admission`, `children`, `__main__`) import only the standard library, so
a worker can run under another interpreter (an engine's own virtualenv) with just this folder and the backend
module on its path. `host` is the harness's end; `children` makes every process the harness starts die with it.
"""
