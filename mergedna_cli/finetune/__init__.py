"""Fine-tuning: task spec, head, loop, checkpoint format, metrics and the inference-time predictor."""
