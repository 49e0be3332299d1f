"""Finding neighbours: exact top-k, the approximate index, the name resolver, ``match``
(all pairs), ``similar``/``unique`` and ``search`` (text queries)."""
