"""Budget-sweep evaluation: every method at the same visual budgets, on the same frames and backbone."""
