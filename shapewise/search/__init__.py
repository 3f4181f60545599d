"""Shape search: Optuna (recommend_shape) and the exhaustive reference."""
