"""A model's chat template, rendered the way transformers and vLLM's server render it (jinja2's sandbox).

Shared by the reference server (/v1/chat/completions) and the conversations workload, which must turn the
same messages into the same tokens that a server's chat endpoint would.
"""

from __future__ import annotations

import json
from pathlib import Path


class ChatTemplateError(ValueError):
    """The model has no chat template, or its template rejected the messages."""

    param = "messages"


class ChatTemplate:
    """The model folder's chat template: chat_template.jinja, else tokenizer_config.json's `chat_template`."""

    def __init__(self, model_dir: Path):
        import jinja2.sandbox

        model_dir = Path(model_dir)
        config = {}
        if (model_dir / "tokenizer_config.json").is_file():
            config = json.loads((model_dir / "tokenizer_config.json").read_text())
        source = None
        if (model_dir / "chat_template.jinja").is_file():
            source = (model_dir / "chat_template.jinja").read_text()
        elif isinstance(config.get("chat_template"), str):
            source = config["chat_template"]
        self.available = source is not None
        env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise_template_error
        self._template = env.from_string(source) if source else None
        self._special = {k: v for k, v in config.items() if k.endswith("_token") and isinstance(v, str)}

    def render(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        if self._template is None:
            raise ChatTemplateError("this model has no chat template; use /v1/completions")
        return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt, **self._special)


def _raise_template_error(message: str) -> None:
    raise ChatTemplateError(f"chat template: {message}")
