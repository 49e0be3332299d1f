"""Defaults that more than one stage shares, defined once."""

#: the model a collection is indexed with when none is named (embedded weights, offline)
DEFAULT_MODEL = "effnet-lite0"
#: how many neighbours ``match``, ``similar`` and ``search`` list
DEFAULT_K = 10
