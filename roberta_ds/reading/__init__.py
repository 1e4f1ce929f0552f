"""Reading the shards for training and evaluation: each rank's sequences in the epoch's order (data), one
sequence at a time from the tar shards (shard_reader), and masking (masking)."""
