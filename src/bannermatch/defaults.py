"""Defaults that more than one stage, or a stage and the CLI, share: defined once."""

#: the model a collection is indexed with when none is named (embedded weights, offline)
DEFAULT_MODEL = "effnet-lite0"
#: how many neighbours ``match``, ``similar`` and ``search`` list
DEFAULT_K = 10
#: images embedded per batch (``index``, ``eval``)
BATCH_SIZE = 64
#: items ``unique`` lists
UNIQUE_N = 250
#: items on the report's unique page, and grid images of queries at most
REPORT_UNIQUE = 100
REPORT_MAX_GRIDS = 100
#: where ``serve`` and ``demo`` listen
HOST = "127.0.0.1"
PORT = 8000
#: global candidates verified by ``--rerank`` when no K is given
RERANK_K = 100
#: recall@k an approximate index's search breadth is tuned to (``match --index``)
TARGET_RECALL = 0.95
