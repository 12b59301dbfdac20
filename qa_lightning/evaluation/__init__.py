"""The evaluation wing: logits -> answers -> metrics -> files (numpy and torch, no Lightning)."""
