"""Backbones behind one interface: the resize operator, the built-in model, the Qwen adapter, the vLLM engine."""
