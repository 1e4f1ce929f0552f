"""Reading the shards for training and evaluation: each rank's sequences in the epoch's order (data), one
sequence at a time from the tar shards (shard_reader), and masking (masking)."""

SHUFFLE_BUFFER = 100_000
"""Default window (in sequences) the epoch order shuffles sequences inside (--shuffle_buffer). Here, not in data.py,
so that the run's config (and --help) is built without importing torch."""
