"""Rewards for real MLLM answers (method spec §7): answer extraction, acc per problem type, format reward, DAPO
overlong penalty. ``accuracy`` is the Allocator's reward; ``backbone_score`` adds format and length terms."""

from resadapt.rewards.extract import extract_answer
from resadapt.rewards.score import TASKS, Truth, accuracy, backbone_score, format_reward, overlong_penalty

__all__ = ["TASKS", "Truth", "accuracy", "backbone_score", "extract_answer", "format_reward", "overlong_penalty"]
