"""Training our own ZipMap: procedural scenes with ground truth, losses, the trainer, evaluation."""
