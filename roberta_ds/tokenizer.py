"""Loading the WordPiece tokenizer and describing its identity.

Accepted sources (docs/design.md, "Tokenizer"):
  * a local tokenizer directory (``save_pretrained`` output, or a folder holding ``vocab.txt``),
  * a bare ``vocab.txt`` file,
  * a hub id such as ``hfl/chinese-bert-wwm-ext`` (only when the hub is reachable).

transformers 5.x builds a silent 5-token tokenizer from ``BertTokenizerFast(vocab_file=...)``,
so a bare vocab file is copied into a temporary directory and loaded with ``from_pretrained``,
then checked against the file's line count.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # transformers is imported where it is used: --help and the config need none of it
    from transformers import PreTrainedTokenizerBase

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


POSITION_OFFSET = 2
"""RoBERTa's position ids start after the pad id (transformers' create_position_ids_from_input_ids): a model with P
position rows takes P - 2 tokens."""

CHAR_TABLE: dict[str, str] = {
    "\u201c": '"',  # “ left double quotation mark
    "\u201d": '"',  # ” right double quotation mark
    "\u2018": "'",  # ‘ left single quotation mark
    "\u2019": "'",  # ’ right single quotation mark
    "\u2014": "-",  # — em dash (Chinese "——" becomes "--")
    "\u2013": "-",  # – en dash
    "\u2015": "-",  # ― horizontal bar (inews: 58 [UNK])
    "\u2026": "...",  # … ellipsis
}
"""The characters the standard Chinese BERT vocab lacks, each mapped to one it has (data_tools/normalize.py says
why). The one table: pack applies it before tokenizing, and the exported tokenizer carries it as its normalizer."""


def handoff_tokenizer(tokenizer: PreTrainedTokenizerBase, *, max_tokens: int, token_types: int,
                      normalize: bool = True) -> PreTrainedTokenizerBase:
    """The tokenizer colleagues load with AutoTokenizer next to an exported model: the CHAR_TABLE normalizer in its
    tokenizer.json (fine-tuning text is normalised as pretraining text was), ``truncation=True`` stopping at the
    model's positions, and no token_type_ids when the model has one token type (a pair would index row 1)."""
    from tokenizers import normalizers
    from transformers import PreTrainedTokenizerFast

    backend = copy.deepcopy(tokenizer.backend_tokenizer)
    if normalize:
        steps = [normalizers.Replace(a, b) for a, b in CHAR_TABLE.items()]
        backend.normalizer = normalizers.Sequence([*steps, backend.normalizer] if backend.normalizer else steps)
    names = ["input_ids", "token_type_ids", "attention_mask"] if token_types > 1 else ["input_ids", "attention_mask"]
    # The generic fast class: a BertTokenizer would rebuild its normalizer from do_lower_case & co. on load and drop
    # the table (transformers 5).
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, model_max_length=max_tokens, model_input_names=names,
        unk_token=tokenizer.unk_token, sep_token=tokenizer.sep_token, pad_token=tokenizer.pad_token,
        cls_token=tokenizer.cls_token, mask_token=tokenizer.mask_token)


HANDOFF_CLASS = "PreTrainedTokenizerFast"
"""The tokenizer class an export names. The one name every transformers version from 4.40 to 5.x builds straight from
tokenizer.json, the character table included: 5.x's BertTokenizer(Fast) rebuilds BERT's normalizer from
do_lower_case & co. and drops the table (a “ becomes [UNK]); 4.x does not know 5.x's "TokenizersBackend"."""


def save_handoff_tokenizer(tokenizer: PreTrainedTokenizerBase, out: str | Path, *, max_tokens: int, token_types: int,
                           normalize: bool = True) -> None:
    """``handoff_tokenizer`` saved the way every client loads it: tokenizer.json (the normalizer with the table),
    a tokenizer_config.json naming HANDOFF_CLASS and carrying BERT's flags (do_lower_case, tokenize_chinese_chars,
    strip_accents) for the slow BertTokenizer, and vocab.txt (one token per line in id order, the same ids) for the
    code written for hfl's checkpoints: the slow BertTokenizer, jieba/LTP whole-word tools, TF/Paddle ports."""
    out = Path(out)
    handoff_tokenizer(tokenizer, max_tokens=max_tokens, token_types=token_types,
                      normalize=normalize).save_pretrained(str(out))
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.pop("backend", None)  # 5.x's loader hint; 4.x would keep it as an unknown init argument
    config.update(tokenizer_class=HANDOFF_CLASS, **bert_flags(tokenizer))
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "vocab.txt").write_text(vocab_lines(tokenizer), encoding="utf-8")


def bert_flags(tokenizer: PreTrainedTokenizerBase) -> dict:
    """BERT's normalizer settings as the slow BertTokenizer's arguments, read from the fast tokenizer's BertNormalizer
    (BERT's defaults where it has none)."""
    state = json.loads(tokenizer.backend_tokenizer.to_str()).get("normalizer") or {}
    steps = state.get("normalizers", [state]) if state.get("type") == "Sequence" else [state]
    bert = next((s for s in steps if s.get("type") == "BertNormalizer"), {})
    return {"do_lower_case": bert.get("lowercase", True), "tokenize_chinese_chars": bert.get("handle_chinese_chars", True),
            "strip_accents": bert.get("strip_accents")}


def vocab_lines(tokenizer: PreTrainedTokenizerBase) -> str:
    """vocab.txt: token i on line i. Raises when the ids are not 0..n-1 or a token holds a line break (the file could
    not give the same ids back)."""
    by_id = sorted((i, t) for t, i in tokenizer.get_vocab().items())
    gaps = [i for n, (i, _) in enumerate(by_id) if i != n]
    broken = [t for _, t in by_id if "\n" in t or "\r" in t]
    if gaps or broken:
        raise TokenizerError(f"the vocabulary cannot be written as vocab.txt: ids not 0..{len(by_id) - 1} (first "
                             f"gap at {gaps[:1]}) or tokens with line breaks {broken[:3]}")
    return "".join(t + "\n" for _, t in by_id)


class TokenizerError(ValueError):
    """The tokenizer could not be loaded or does not fit the data."""


@dataclass(frozen=True)
class TokenizerInfo:
    """Identity of a tokenizer, stored in the shard manifest and in every run."""

    name: str
    """Where it came from (path or hub id), for humans; not compared."""
    vocab_size: int
    """Number of ids, including special tokens."""
    vocab_sha256: str
    """sha256 over the sorted ``token<TAB>id`` lines: equal vocabularies hash equal wherever they live."""
    pad_id: int
    unk_id: int
    cls_id: int
    sep_id: int
    mask_id: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TokenizerInfo":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})

    def conflicts(self, other: "TokenizerInfo") -> list[str]:
        """Every field (except the name) on which two identities disagree, as readable lines."""
        out = []
        for field in self.__dataclass_fields__:
            if field == "name":
                continue
            a, b = getattr(self, field), getattr(other, field)
            if a != b:
                out.append(f"{field}: {a!r} ({self.name}) != {b!r} ({other.name})")
        return out


def vocab_sha256(tokenizer: PreTrainedTokenizerBase) -> str:
    vocab = tokenizer.get_vocab()
    lines = "\n".join(f"{tok}\t{idx}" for tok, idx in sorted(vocab.items(), key=lambda kv: kv[1]))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def tokenizer_info(tokenizer: PreTrainedTokenizerBase, name: str) -> TokenizerInfo:
    ids = {}
    missing = []
    for attr, tok in zip(("pad_id", "unk_id", "cls_id", "sep_id", "mask_id"), SPECIAL_TOKENS):
        idx = tokenizer.convert_tokens_to_ids(tok)
        if idx is None or (idx == tokenizer.unk_token_id and tok != "[UNK]"):
            missing.append(tok)
        ids[attr] = idx
    if missing:
        raise TokenizerError(
            f"tokenizer {name!r} lacks the BERT special tokens {missing}; "
            "use a BERT-style WordPiece vocab (build one with `python -m data_tools build-vocab`)."
        )
    return TokenizerInfo(name=name, vocab_size=len(tokenizer), vocab_sha256=vocab_sha256(tokenizer), **ids)


def _count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


def load_tokenizer(path_or_id: str | Path) -> PreTrainedTokenizerBase:
    """Load a BERT-style WordPiece tokenizer from a directory, a vocab.txt, or a hub id."""
    from transformers import AutoTokenizer, BertTokenizerFast

    p = Path(path_or_id)
    if p.is_file():
        if p.suffix != ".txt":
            raise TokenizerError(
                f"--tokenizer_path {p} is a file but not a vocab.txt; pass a vocab.txt, "
                "a tokenizer directory, or a hub id."
            )
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy(p, Path(tmp) / "vocab.txt")
            tok = BertTokenizerFast.from_pretrained(tmp)
        expected = _count_lines(p)
        if len(tok) != expected:
            raise TokenizerError(f"{p}: loaded {len(tok)} tokens but the file has {expected} lines")
        return tok
    if p.is_dir():
        if (p / "tokenizer.json").exists() or (p / "tokenizer_config.json").exists():
            return AutoTokenizer.from_pretrained(str(p))
        if (p / "vocab.txt").exists():
            return load_tokenizer(p / "vocab.txt")
        raise TokenizerError(
            f"--tokenizer_path {p} is a directory with neither tokenizer.json nor vocab.txt "
            f"(it holds: {sorted(x.name for x in p.iterdir())[:10]})."
        )
    looks_like_path = str(path_or_id).startswith((".", "/", "~")) or str(path_or_id).count("/") > 1
    if looks_like_path:
        raise TokenizerError(f"--tokenizer_path {path_or_id}: no such file or directory.")
    try:
        return AutoTokenizer.from_pretrained(str(path_or_id))
    except Exception as e:  # the hub raises many types: offline, 404, auth
        raise TokenizerError(
            f"could not load tokenizer {path_or_id!r} from the Hugging Face hub ({type(e).__name__}). "
            "Offline? Pass a local tokenizer directory or a vocab.txt with --tokenizer_path, "
            "or build a vocab from your corpus: `python -m data_tools build-vocab --format ... --output DIR`."
        ) from e
