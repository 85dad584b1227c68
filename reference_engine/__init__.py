"""A paged-attention LLM inference engine that runs on CPU (and CUDA), usable without benchctl."""
