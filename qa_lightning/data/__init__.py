"""The data wing: sources -> features -> cache -> batches, tied together by ``datamodule.SquadDataModule``."""
