"""The evaluation wing: logits -> answers -> metrics -> files. Pure numpy/torch: no Lightning."""
