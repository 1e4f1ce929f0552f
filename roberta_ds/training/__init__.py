"""Pretraining, grouped by concern (docs/architecture.md; tests/test_layering.py holds the order):

    model/    the model: config, attention kind, vocab padding, compile, HF conversion, memory estimates
    engine/   DeepSpeed: the JSON (ds_config), the engine (setup), the launch variables (launch_env), collectives,
              checkpoints (save, resume on another world size, export)
    loop/     when things happen: cadence, schedule and clock, step guard, preemption
    observe/  what the run measured: records and their definitions, window metrics, sums, the state a checkpoint
              carries, held-out evaluation, sanity checks, the summary, the live view and the monitors
    run_files.py  the names of what a run writes into its --output_dir

and, on top, the assembly: config.py (every setting), build.py (a run from its settings), trainer.py (the loop).
A group imports only the groups below it (model < engine < loop < observe < assembly)."""
