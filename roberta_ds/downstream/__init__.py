"""Using a trained model: loading and evaluating a saved one (saved_model), the fine-tuning probe (probe)."""
