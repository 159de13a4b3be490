"""Pre-training and fine-tuning: data sampling, the training loop, checkpoints."""
