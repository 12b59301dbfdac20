"""The evaluation wing: logits -> answers -> metrics -> files. Pure numpy/torch: no Lightning.

| module | job |
| --- | --- |
| ``evalset.py`` | what decoding needs of a split (ids, contexts, golds, offsets, CLS positions) as arrays |
| ``gather.py`` | collect per-batch logits, all-gather across ranks, restore dataset order |
| ``decoding.py`` | the recipe's n-best span rule, n-best lists, the v2 null score and null rule |
| ``metrics.py`` | SQuAD v1.1/v2.0 EM/F1 as the official scripts define them |
| ``postprocess.py`` | the seam: gathered logits + EvalSet + settings -> predictions, n-best, null odds, metrics, files |
"""
