"""RoBERTa FULL-SENTENCES packing: one split's token stream -> fixed-length sequences (main process).

Documents arrive in input order (already tokenized by data_tools.tokenize_worker); each is appended
to the stream with a [SEP], and every ``max_seq_length - 1`` stream tokens become one sequence behind
a [CLS]. Nothing is truncated and only the split's last sequence is padded.
"""

from __future__ import annotations

import numpy as np


class Packer:
    """Token stream of one split -> fixed-length sequences ([CLS] + max_seq_length-1 stream tokens).

    The stream is doc1 [SEP] doc2 [SEP] ...; a long document simply continues in the next sequence
    (nothing is truncated). Only ``finish()`` pads, once per split.
    """

    def __init__(self, max_seq_length: int, cls_id: int, sep_id: int, pad_id: int, dtype: np.dtype, wwm: bool):
        self.L = max_seq_length
        self.cls_id, self.sep_id, self.pad_id = cls_id, sep_id, pad_id
        self.dtype = np.dtype(dtype)
        self.wwm = wwm
        self.carry = np.zeros(0, dtype=self.dtype)
        self.carry_ws = np.zeros(0, dtype=bool)

    def add(self, ids: np.ndarray, ws: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Append one document (+[SEP]); return the completed sequences [n, L] (n may be 0)."""
        stream = np.concatenate([self.carry, ids, np.array([self.sep_id], dtype=self.dtype)])
        if self.wwm:
            stream_ws = np.concatenate([self.carry_ws, ws, np.ones(1, dtype=bool)])
        body = self.L - 1
        n = len(stream) // body
        self.carry = stream[n * body :]
        seqs = np.empty((n, self.L), dtype=self.dtype)
        seqs[:, 0] = self.cls_id
        seqs[:, 1:] = stream[: n * body].reshape(n, body)
        seq_ws = None
        if self.wwm:
            self.carry_ws = stream_ws[n * body :]
            seq_ws = np.ones((n, self.L), dtype=bool)
            seq_ws[:, 1:] = stream_ws[: n * body].reshape(n, body)
        return seqs, seq_ws

    def finish(self) -> tuple[np.ndarray, np.ndarray | None, int]:
        """The padded remainder sequence (0 or 1 rows) and its padding token count."""
        if len(self.carry) == 0:
            return np.zeros((0, self.L), self.dtype), (np.zeros((0, self.L), bool) if self.wwm else None), 0
        seq = np.full((1, self.L), self.pad_id, dtype=self.dtype)
        seq[0, 0] = self.cls_id
        seq[0, 1 : 1 + len(self.carry)] = self.carry
        pad = self.L - 1 - len(self.carry)
        seq_ws = None
        if self.wwm:
            seq_ws = np.ones((1, self.L), dtype=bool)
            seq_ws[0, 1 : 1 + len(self.carry)] = self.carry_ws
        self.carry = self.carry[:0]
        self.carry_ws = self.carry_ws[:0]
        return seq, seq_ws, pad
