"""data_tools: raw Chinese news corpora -> packed WebDataset shards (see roberta_ds.shard_format).

Kept import-light on purpose: pool workers are started with ``spawn`` and import only
``data_tools.tokenize_worker`` (numpy + tokenizers), never transformers or torch.
"""
