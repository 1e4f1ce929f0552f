"""Corpus readers, cleaning, tokenization, packing and WebDataset shard writing for roberta-ds."""
