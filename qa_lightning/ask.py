"""``python -m qa_lightning ask``: answer questions with a trained model from the command line.

JSON lines ``{"id", "question", "context"}`` in give ``{"id", "answer", "start", "end", "score"}`` lines out, in
order (``"answers"`` too with ``--top-k`` > 1, ``"no_answer"`` for SQuAD v2 models). The work is ``infer.QAModel``'s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .errors import OneLineParser, QAInputError

# Flags that override a recorded QAModel setting (--max-length -> max_length; --null-threshold: the v2 threshold)
_INT_SETTINGS = ("max_length", "stride", "n_best", "max_answer_length", "batch_size")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m qa_lightning ask", description=__doc__.splitlines()[0],
                      formatter_class=argparse.RawDescriptionHelpFormatter, epilog="\n".join(__doc__.splitlines()[2:6]))
    p.add_argument("--model", help="export folder of a run (<run folder>/export) or a .ckpt written by fit")
    p.add_argument("--question", help="the question (without it: JSON lines on stdin)")
    p.add_argument("--context", help="the text to find the answer in")
    p.add_argument("--context-file", help="read the context from this UTF-8 text file")
    p.add_argument("--top-k", type=int, default=1, help="how many answers, best first (default 1)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    for flag in _INT_SETTINGS:
        p.add_argument(f"--{flag.replace('_', '-')}", dest=flag, type=int, default=None,
                       help="override the recorded setting")
    p.add_argument("--null-threshold", dest="null_score_diff_threshold", type=float, default=None,
                   help="SQuAD v2: null score difference threshold (default: the recorded one)")
    return p


def read_jsonl(lines, source: str = "stdin") -> list[dict]:
    """Parse JSON lines into records; a bad line is a :class:`QAInputError` naming its number."""
    from .data.formats import jsonl_lines
    from .infer import check_record

    records = []
    for n, rec in jsonl_lines(lines, source):
        check_record(rec, f"{source} line {n}")  # what QAModel checks in every record
        # ids are strings everywhere (as predict's): a missing id is the line number, as text
        rec["id"] = str(rec["id"]) if rec.get("id") not in (None, "") else str(n)
        records.append(rec)
    if not records:
        raise QAInputError(f"{source}: no questions (expected one JSON object per line with 'question' and 'context')")
    return records


def _context(args) -> str:
    if args.context is not None and args.context_file:
        raise QAInputError("give --context or --context-file, not both")
    if args.context_file:
        if not os.path.isfile(args.context_file):
            raise QAInputError(f"--context-file {args.context_file}: no such file")
        with open(args.context_file, encoding="utf-8") as fh:
            return fh.read()
    if args.context is None:
        raise QAInputError("--question needs --context TEXT or --context-file FILE")
    return args.context


def _show(answers, top_k: int) -> str:
    lines = []
    for rank, a in enumerate(answers if isinstance(answers, list) else [answers], 1):
        if a.no_answer:
            text = f"(no answer: the null score beats the best span by {a.null_odds:.2f} > threshold {a.threshold:g})"
            where = ""
        else:
            text = a.text if a.text else "(no valid span)"
            where = f"  characters {a.start}-{a.end}" if a.start is not None else ""
        head = "answer:" if top_k == 1 else f"{rank}."
        lines.append(f"{head} {text}\n{' ' * len(head)} score {a.score:.4f}{where}")
    return "\n".join(lines)


def _record(rec: dict, answers, top_k: int) -> dict:
    ranked = answers if isinstance(answers, list) else [answers]
    best = ranked[0]
    out = {"id": rec["id"], "answer": best.text, "start": best.start, "end": best.end, "score": best.score}
    if best.no_answer is not None:
        out.update(no_answer=best.no_answer, null_odds=best.null_odds)
    if top_k > 1:
        out["answers"] = [{"answer": a.text, "start": a.start, "end": a.end, "score": a.score} for a in ranked]
    return out


def run(argv: list[str]) -> None:
    """``python -m qa_lightning ask ARGS``; raises :class:`QAInputError` for user mistakes."""
    args = build_parser().parse_args(argv)
    if not args.model:
        raise QAInputError("--model is required: the export folder of a run (<run folder>/export) or a .ckpt")
    if args.top_k < 1:
        raise QAInputError(f"--top-k must be >= 1, got {args.top_k}")
    single = args.question is not None
    if single and not args.question.strip():
        raise QAInputError("--question is empty")
    if not single and (args.context is not None or args.context_file):
        raise QAInputError("--context needs --question (without --question, ask reads JSON lines from stdin)")
    if single:
        records = [{"id": 1, "question": args.question, "context": _context(args)}]
        if not records[0]["context"].strip():
            raise QAInputError(f"{'--context-file ' + args.context_file if args.context_file else '--context'}: "
                               "the context is empty")
    elif sys.stdin.isatty():
        raise QAInputError("no --question and nothing on stdin: pass --question and --context, or pipe JSON lines")
    else:
        records = read_jsonl(sys.stdin)
    from transformers.utils import logging as hf_logging

    from .infer import QAModel

    hf_logging.disable_progress_bar()  # no "Loading weights" bars around the answer
    overrides = {k: v for k, v in vars(args).items()
                 if k in (*_INT_SETTINGS, "null_score_diff_threshold") and v is not None}  # None: the recorded one
    qa = QAModel.from_pretrained(args.model, device=args.device, **overrides)
    answers = qa.answer_many(records, top_k=args.top_k)
    if single:
        print(_show(answers[0], args.top_k))
        return
    for rec, ans in zip(records, answers):
        sys.stdout.write(json.dumps(_record(rec, ans, args.top_k), ensure_ascii=False) + "\n")
