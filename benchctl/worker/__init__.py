"""The process boundary between the harness and an engine.

Worker-side modules (`protocol`, `admission`, `__main__`) import only the standard library, so a
worker can run under another interpreter (an engine's own virtualenv) with just this folder and the
backend module on its path.
"""
