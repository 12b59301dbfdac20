"""The reference recipe restated loop by loop: preprocessing, n-best decoding, the official v1.1 evaluation.

    from reference import reference_train_features, reference_decode

This is the behaviour qa_lightning must match (the Hugging Face course chapter on question answering, and the
official evaluate-v1.1.py), kept as plain slow functions: the tests compare our vectorised code against them
feature for feature, and the benchmarks (``bench/``, at the repository root) time them as the baseline. The training pipeline
never calls them.
"""

from __future__ import annotations

import collections

import numpy as np


def reference_train_features(examples, tokenizer, max_length=384, stride=128):
    questions = [q.strip() for q in examples["question"]]
    inputs = tokenizer(questions, examples["context"], max_length=max_length, truncation="only_second",
                       stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True,
                       padding="max_length")
    offset_mapping = inputs.pop("offset_mapping")
    sample_map = inputs.pop("overflow_to_sample_mapping")
    starts, ends = [], []
    for i, offset in enumerate(offset_mapping):
        answer = examples["answers"][sample_map[i]]
        start_char = answer["answer_start"][0]
        end_char = start_char + len(answer["text"][0])
        seq = inputs.sequence_ids(i)
        idx = 0
        while seq[idx] != 1:
            idx += 1
        context_start = idx
        while seq[idx] == 1:
            idx += 1
        context_end = idx - 1
        if offset[context_start][0] > start_char or offset[context_end][1] < end_char:
            starts.append(0)
            ends.append(0)
        else:
            idx = context_start
            while idx <= context_end and offset[idx][0] <= start_char:
                idx += 1
            starts.append(idx - 1)
            idx = context_end
            while idx >= context_start and offset[idx][1] >= end_char:
                idx -= 1
            ends.append(idx + 1)
    inputs["start_positions"] = starts
    inputs["end_positions"] = ends
    return inputs


def reference_validation_features(examples, tokenizer, max_length=384, stride=128):
    questions = [q.strip() for q in examples["question"]]
    inputs = tokenizer(questions, examples["context"], max_length=max_length, truncation="only_second",
                       stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True,
                       padding="max_length")
    sample_map = inputs.pop("overflow_to_sample_mapping")
    example_ids = []
    for i in range(len(inputs["input_ids"])):
        example_ids.append(examples["id"][sample_map[i]])
        seq = inputs.sequence_ids(i)
        offset = inputs["offset_mapping"][i]
        inputs["offset_mapping"][i] = [o if seq[k] == 1 else None for k, o in enumerate(offset)]
    inputs["example_id"] = example_ids
    return inputs


def reference_decode(start_logits, end_logits, features, examples, n_best=20, max_answer_length=30):
    """``features``: list of dicts with example_id and offset_mapping; ``examples``: list of dicts id/context."""
    example_to_features = collections.defaultdict(list)
    for idx, feature in enumerate(features):
        example_to_features[feature["example_id"]].append(idx)
    predicted = {}
    for example in examples:
        example_id, context = example["id"], example["context"]
        answers = []
        for feature_index in example_to_features[example_id]:
            start_logit = start_logits[feature_index]
            end_logit = end_logits[feature_index]
            offsets = features[feature_index]["offset_mapping"]
            start_indexes = np.argsort(start_logit)[-1: -n_best - 1: -1].tolist()
            end_indexes = np.argsort(end_logit)[-1: -n_best - 1: -1].tolist()
            for start_index in start_indexes:
                for end_index in end_indexes:
                    if offsets[start_index] is None or offsets[end_index] is None:
                        continue
                    if end_index < start_index or end_index - start_index + 1 > max_answer_length:
                        continue
                    answers.append({"text": context[offsets[start_index][0]: offsets[end_index][1]],
                                    "logit_score": start_logit[start_index] + end_logit[end_index]})
        if answers:
            predicted[example_id] = max(answers, key=lambda x: x["logit_score"])["text"]
        else:
            predicted[example_id] = ""
    return predicted


# --------------------------------------------------------------------------------------------------------------
# The official SQuAD v1.1 evaluation (evaluate-v1.1.py), restated: dataset JSON + {id: text} -> EM/F1.
def _official_normalize(s):
    import re
    import string

    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def _official_f1(prediction, ground_truth):
    prediction_tokens = _official_normalize(prediction).split()
    ground_truth_tokens = _official_normalize(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def official_v1_evaluate(dataset, predictions):
    """``dataset``: the ``data`` list of an official SQuAD JSON; ``predictions``: {id: text}."""
    f1 = exact_match = total = 0
    for article in dataset:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                total += 1
                if qa["id"] not in predictions:
                    continue
                ground_truths = [a["text"] for a in qa["answers"]]
                prediction = predictions[qa["id"]]
                exact_match += max(float(_official_normalize(prediction) == _official_normalize(g))
                                   for g in ground_truths)
                f1 += max(_official_f1(prediction, g) for g in ground_truths)
    return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}


# --------------------------------------------------------------------------------------------------------------
# The official SQuAD v2.0 evaluation (evaluate-v2.0.py), restated: exact/f1, HasAns/NoAns, best thresholds.
def _official_f1_v2(a_gold, a_pred):
    gold_toks = _official_normalize(a_gold).split() if a_gold else []
    pred_toks = _official_normalize(a_pred).split() if a_pred else []
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def official_v2_evaluate(dataset, preds, na_probs=None, na_prob_thresh=1.0):
    """``dataset``: the ``data`` list of a SQuAD v2 JSON; ``preds``: {id: text}; ``na_probs``: {id: float}."""
    if na_probs is None:
        na_probs = {k: 0.0 for k in preds}
    qid_to_has_ans = {}
    exact_scores, f1_scores = {}, {}
    for article in dataset:
        for p in article["paragraphs"]:
            for qa in p["qas"]:
                qid = qa["id"]
                qid_to_has_ans[qid] = bool(qa["answers"])
                gold_answers = [a["text"] for a in qa["answers"] if _official_normalize(a["text"])]
                if not gold_answers:
                    gold_answers = [""]
                if qid not in preds:
                    continue
                a_pred = preds[qid]
                exact_scores[qid] = max(int(_official_normalize(a) == _official_normalize(a_pred)) for a in gold_answers)
                f1_scores[qid] = max(_official_f1_v2(a, a_pred) for a in gold_answers)

    def apply_thresh(scores):
        out = {}
        for qid, s in scores.items():
            out[qid] = float(not qid_to_has_ans[qid]) if na_probs[qid] > na_prob_thresh else s
        return out

    exact_thresh, f1_thresh = apply_thresh(exact_scores), apply_thresh(f1_scores)

    def make_eval(qid_list=None):
        if qid_list is None:
            total = len(exact_thresh)
            return {"exact": 100.0 * sum(exact_thresh.values()) / total,
                    "f1": 100.0 * sum(f1_thresh.values()) / total, "total": total}
        total = len(qid_list)
        return {"exact": 100.0 * sum(exact_thresh[k] for k in qid_list) / total,
                "f1": 100.0 * sum(f1_thresh[k] for k in qid_list) / total, "total": total}

    out = make_eval()
    has_ans = [k for k, v in qid_to_has_ans.items() if v]
    no_ans = [k for k, v in qid_to_has_ans.items() if not v]
    for prefix, ids in (("HasAns", has_ans), ("NoAns", no_ans)):
        if ids:
            for k, v in make_eval(ids).items():
                out[f"{prefix}_{k}"] = v

    def find_best_thresh(scores):
        num_no_ans = len(no_ans)
        cur_score = best_score = num_no_ans
        best_thresh = 0.0
        for qid in sorted(na_probs, key=lambda k: na_probs[k]):
            if qid not in scores:
                continue
            if qid_to_has_ans[qid]:
                diff = scores[qid]
            else:
                diff = -1 if preds[qid] else 0
            cur_score += diff
            if cur_score > best_score:
                best_score = cur_score
                best_thresh = na_probs[qid]
        return 100.0 * best_score / len(scores), best_thresh

    out["best_exact"], out["best_exact_thresh"] = find_best_thresh(exact_scores)
    out["best_f1"], out["best_f1_thresh"] = find_best_thresh(f1_scores)
    return out
