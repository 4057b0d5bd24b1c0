"""ResAdapt: query-aware per-frame resolution allocation in front of an unchanged video MLLM."""

__version__ = "0.1.0"
