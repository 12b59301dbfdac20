"""Tokenizers and tiny random models for the tests, built locally (no hub).

    tok = build_tokenizer("xlnet")                    # bert-base-cased WordPiece, XLNet-like pairs, left padding
    folder = tiny_model_folder("roberta", tmp_path)   # RobertaConfig (2 layers, hidden 32) + a RobertaTokenizer(Fast)

``tiny_model_folder`` writes what ``--model.model_name_or_path`` takes: ``config.json`` of the architecture's own
config class and a tokenizer of its real (fast) tokenizer class whose vocabulary is trained on the fixture SQuAD
texts. With transformers 5 the class builds its own pipeline (``Class()``, then ``train_new_from_iterator``); the
4.x fast classes need vocabulary files, so WordPiece and BPE classes get files holding only their special tokens
(the class's converter builds the pipeline) and SentencePiece (Unigram) classes, whose converter needs the
``sentencepiece`` package, get the pipeline of the 4.x converter built here: Metaspace, the class's special tokens
and pair template. ModernBERT's hub tokenizer is a plain ``PreTrainedTokenizerFast`` (byte-level BPE, [CLS]/[SEP]
pairs, no token types), built the same way in both versions.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import transformers

from conftest import TINY_BERT, TINY_DEV, TINY_TRAIN, squad_examples

V5 = hasattr(transformers, "TokenizersBackend")  # transformers 5: tokenizer classes build their own pipeline
VOCAB_SIZE = 1000
LAYERS = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
              max_position_embeddings=256)


@dataclass(frozen=True)
class Arch:
    """config: the config class; tokenizer: the fast class the hub's models of this type load (4.x name);
    family: its vocabulary model; pair: its pair template ("bert": CLS A SEP B SEP, "roberta": <s> A </s></s> B
    </s>); config_kwargs: the tiny sizes and architecture switches."""

    config: str
    tokenizer: str
    family: str
    pair: str = "bert"
    config_kwargs: dict = field(default_factory=lambda: dict(LAYERS))
    specials: Optional[dict] = None  # special tokens, for a class without its own (PreTrainedTokenizerFast)


ARCHS = {
    "bert": Arch("BertConfig", "BertTokenizerFast", "wordpiece"),
    "roberta": Arch("RobertaConfig", "RobertaTokenizerFast", "bpe", "roberta"),
    "deberta-v2": Arch("DebertaV2Config", "DebertaV2TokenizerFast", "unigram", config_kwargs=dict(
        LAYERS, relative_attention=True, pos_att_type=["p2c", "c2p"], position_biased_input=False,
        position_buckets=32)),  # the DeBERTa-v3 layout
    "xlm-roberta": Arch("XLMRobertaConfig", "XLMRobertaTokenizerFast", "unigram", "roberta"),
    "albert": Arch("AlbertConfig", "AlbertTokenizerFast", "unigram", config_kwargs=dict(LAYERS, embedding_size=16)),
    "distilbert": Arch("DistilBertConfig", "DistilBertTokenizerFast", "wordpiece", config_kwargs=dict(
        dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=256)),
    "electra": Arch("ElectraConfig", "ElectraTokenizerFast", "wordpiece", config_kwargs=dict(LAYERS, embedding_size=16)),
    "modernbert": Arch("ModernBertConfig", "PreTrainedTokenizerFast", "bpe", config_kwargs=dict(
        LAYERS, local_attention=16, global_attn_every_n_layers=2), specials=dict(
        cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", mask_token="[MASK]", unk_token="[UNK]")),
    "longformer": Arch("LongformerConfig", "LongformerTokenizerFast", "bpe", "roberta",
                       config_kwargs=dict(LAYERS, attention_window=16)),
    "bigbird": Arch("BigBirdConfig", "BigBirdTokenizerFast", "unigram",
                    config_kwargs=dict(LAYERS, attention_type="original_full")),  # block-sparse needs long inputs
}


def available(name: str) -> bool:
    return hasattr(transformers, ARCHS[name].config)


def corpus() -> list[str]:
    """The texts a tokenizer is trained on: every fixture context (once) and question."""
    texts = []
    for path in (TINY_TRAIN, TINY_DEV):
        rows = squad_examples(path)
        texts += list(dict.fromkeys(rows["context"])) + rows["question"]
    return texts


def _template(style: str, cls: str, sep: str, ids: dict):
    """The post-processor of a pair style: "bert" [CLS] A [SEP] B [SEP] (token types 0/1), "roberta" <s> A </s></s>
    B </s>, "xlnet" A [SEP] B [SEP] [CLS] (CLS last; XLNet's CLS type 2 is 1 here: the tiny BERT has two)."""
    from tokenizers.processors import TemplateProcessing

    single, pair = {"bert": (f"{cls}:0 $A:0 {sep}:0", f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1"),
                    "roberta": (f"{cls} $A {sep}", f"{cls} $A {sep} {sep} $B {sep}"),
                    "xlnet": (f"$A:0 {sep}:0 {cls}:1", f"$A:0 {sep}:0 $B:1 {sep}:1 {cls}:1")}[style]
    return TemplateProcessing(single=single, pair=pair, special_tokens=[(t, ids[t]) for t in (cls, sep)])


def build_tokenizer(style: str):
    """bert-base-cased's WordPiece with another pair layout: "xlnet" (context first, CLS last, left padding) or
    "roberta" (<s> A </s></s> B </s> layout with [CLS]/[SEP], no token_type_ids)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer.from_file(str(TINY_BERT / "tokenizer.json"))
    backend.post_processor = _template(style, "[CLS]", "[SEP]", backend.get_vocab())
    extra = {"padding_side": "left"} if style == "xlnet" else {"model_input_names": ["input_ids", "attention_mask"]}
    return PreTrainedTokenizerFast(tokenizer_object=backend, cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]",
                                   unk_token="[UNK]", **extra)


def _specials(arch: Arch) -> dict:
    """The class's own special tokens (its constructor defaults), in a fixed order."""
    params = inspect.signature(getattr(transformers, arch.tokenizer).__init__).parameters
    return arch.specials or {k: p.default for k, p in params.items() if k.endswith("_token") and isinstance(p.default, str)}


def _built_here(arch: Arch, specials: dict, folder: Path):
    """An untrained tokenizer of the class where the class cannot build one itself (see the module docstring)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    cls = getattr(transformers, arch.tokenizer)
    tokens = list(dict.fromkeys(specials.values()))
    if arch.family == "wordpiece":  # the class's converter builds the pipeline from a vocab file
        (folder / "vocab.txt").write_text("\n".join(tokens) + "\n")
        return cls(vocab_file=str(folder / "vocab.txt"))
    if arch.family == "bpe" and not arch.specials:
        (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
        (folder / "merges.txt").write_text("#version: 0.2\n")
        return cls(vocab_file=str(folder / "vocab.json"), merges_file=str(folder / "merges.txt"))
    if arch.family == "bpe":  # ModernBERT: byte-level BPE, [CLS] A [SEP] B [SEP], no token types
        backend = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=[]))
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
    else:  # SentencePiece Unigram, as the 4.x converters build it
        backend = Tokenizer(models.Unigram([(t, 0.0) for t in tokens], unk_id=tokens.index(specials["unk_token"])))
        lower = inspect.signature(cls.__init__).parameters.get("do_lower_case")
        if lower is not None and lower.default is True:  # ALBERT
            backend.normalizer = normalizers.Lowercase()
        backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
        backend.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    backend.post_processor = _template(arch.pair, specials["cls_token"], specials["sep_token"],
                                       {t: i for i, t in enumerate(tokens)})
    extra = {"model_input_names": ["input_ids", "attention_mask"]} if arch.specials else {}  # ModernBERT: no types
    return cls(tokenizer_object=backend, **specials, **extra)


def train_tokenizer(name: str, scratch: Path):
    """A tokenizer of ``name``'s real class with a vocabulary trained on :func:`corpus` (``scratch``: a folder for
    the vocabulary files of 4.x classes)."""
    arch = ARCHS[name]
    if V5 and not arch.specials:
        untrained = getattr(transformers, arch.tokenizer)()
    else:
        untrained = _built_here(arch, _specials(arch), scratch)
    return untrained.train_new_from_iterator(corpus(), VOCAB_SIZE)


def tiny_model_folder(name: str, root: Path) -> Path:
    """``root/name``: config.json (random init, ``--model.pretrained false``) + the trained tokenizer."""
    folder, scratch = Path(root) / name, Path(root) / f"{name}-files"
    scratch.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(name, scratch)
    tok.save_pretrained(folder)
    arch = ARCHS[name]
    # The config's special ids are the tokenizer's (BOS/EOS: CLS/SEP where the tokenizer has none, as ModernBERT's)
    tokens = {k: getattr(tok, f"{k}_token", None) for k in ("pad", "bos", "eos", "sep", "cls")}
    tokens["bos"], tokens["eos"] = tokens["bos"] or tokens["cls"], tokens["eos"] or tokens["sep"]
    ids = {f"{k}_token_id": tok.convert_tokens_to_ids(t) for k, t in tokens.items()}
    config = getattr(transformers, arch.config)(vocab_size=len(tok), **arch.config_kwargs, **ids)
    config.save_pretrained(folder)
    return folder
