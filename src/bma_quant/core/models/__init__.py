"""Base learners: the learner registry, the fold loop and refit, and Optuna tuning."""
