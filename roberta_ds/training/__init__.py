"""Pretraining: building a run (config, ds_config, model, engine, build), the loop and its parts (trainer,
cadence, step_guard, live_view, monitor, preemption, schedule, collective, launch_env), what it records (records,
sanity, state, evaluation), and checkpoints (checkpoint, bert_format, warm_start, memory)."""
