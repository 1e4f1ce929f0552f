"""roberta-ds: pretrain Chinese RoBERTa encoders on news corpora with DeepSpeed."""

__version__ = "0.1.0"
