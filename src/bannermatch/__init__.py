"""bannermatch: find images that look alike, from Steam banners to any folder of pictures.

The functions the CLI calls are importable from here; heavy modules load on first use::

    import bannermatch as bm
    bm.index("photos/", "my-collection")
    bm.match("my-collection", k=10)
    print(bm.similar("my-collection", "cat").hits)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "index": "embed.index",
    "match": "query.match",
    "similar": "query.similar",
    "unique": "query.similar",
    "search": "query.words",
    "audit": "evaluation.audit",
    "demo": "present.demo",
    "evaluate": "evaluation.groups",
    "report": "present.report",
    "create_model": "embed.models",
    "create_app": "present.server.app",
    "Collection": "store.collection",
    "BannermatchError": "errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"bannermatch.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'bannermatch' has no attribute {name!r}")
