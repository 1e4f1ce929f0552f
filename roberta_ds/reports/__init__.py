"""What a finished (or running) run is shown as: reports and comparisons (report), model cards (model_card)."""
