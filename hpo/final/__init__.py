"""The final model: retrain the best configuration, test it, save it, predict with it."""
