"""The fine-tuning loop. It never imports Optuna."""
