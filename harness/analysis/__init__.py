"""Stage 5, what the measurements mean: privacy scores, the merged table, the Pareto front, recommend, compare."""
