"""The collection on disk: atomic writes, the SQLite catalogue of items, and the
collection folder (embeddings per model key, manifests, neighbours).

Every later stage reads and writes through this package; it imports only the base
modules (``errors``, ``progress``, ``images``)."""
