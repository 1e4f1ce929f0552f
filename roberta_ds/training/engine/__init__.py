"""DeepSpeed: its JSON (ds_config), the engine and the process group (setup), what launchers set (launch_env),
the ranks' agreement (collective), and checkpoints (checkpoint)."""
