"""Labels, training sets, training, retraining, evaluation and metrics."""
