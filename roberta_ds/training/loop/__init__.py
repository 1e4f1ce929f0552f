"""When the training loop acts: the cadence of logging, evaluation and checkpoints, the schedule and the run's
clock, the step guard's safety stops, and preemption signals."""
