"""CAPO: Cost-Aware Policy Optimisation of the Allocator (advantages and losses as pure functions, the loop)."""
