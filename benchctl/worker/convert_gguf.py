"""Child program: dequantize a GGUF into an fp32 safetensors HF folder (`benchctl.models` launches it).

    python -P -m benchctl.worker.convert_gguf '{"gguf": "/path/model.gguf", "out": "/path/folder"}'

torch and transformers are imported here, in the child, never in the harness process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchctl.worker.child import child_main


def convert(payload: dict) -> dict:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf, out = Path(payload["gguf"]), Path(payload["out"])
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # transformers refuses to save a GGUF-loaded model; the weights are already dequantized fp32,
    # so dropping the quantizer bookkeeping is safe (the reloaded folder gives identical logits).
    model.hf_quantizer = None  # type: ignore[assignment]  # torch types Module.__setattr__ values as Tensor | Module
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    marker = {
        "source": str(gguf),
        "source_bytes": gguf.stat().st_size,
        "dtype": "float32",
        "transformers": transformers.__version__,
    }
    (out / "benchctl-conversion.json").write_text(json.dumps(marker, indent=2))
    return marker


if __name__ == "__main__":
    sys.exit(child_main(convert))
