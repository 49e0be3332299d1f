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

# functions named like the module that holds them are bound eagerly: once a submodule
# is imported, Python would otherwise let the module shadow the function
from .audit import audit
from .demo import demo
from .report import report

_EXPORTS = {
    "index": "indexer",
    "match": "matching",
    "similar": "query",
    "unique": "query",
    "search": "ocr.combined",
    "evaluate": "evaluation",
    "create_model": "models",
    "create_app": "server.app",
    "Collection": "collection",
    "BannermatchError": "errors",
}

__all__ = ["__version__", "audit", "demo", "report", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'bannermatch' has no attribute {name!r}")
