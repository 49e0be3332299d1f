"""bannermatch: find images that look alike, from Steam banners to any folder of pictures.

The functions the CLI calls are importable from here; heavy modules load on first use::

    import bannermatch as bm
    bm.index("photos/", "my-collection")
    bm.match("my-collection", k=10)
    print(bm.similar("my-collection", "cat").hits)
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"

#: functions named like the module that holds them: once the submodule is imported,
#: Python binds the module to the package's attribute, so the package answers with the
#: function (loaded on first use, so that ``bannermatch --help`` imports none of them)
_SHADOWED = ("audit", "demo", "report")

_EXPORTS = {
    **{name: name for name in _SHADOWED},
    "index": "indexer",
    "match": "matching",
    "similar": "query",
    "unique": "query",
    "search": "textsearch",
    "evaluate": "evaluation",
    "create_model": "models",
    "create_app": "server.app",
    "Collection": "collection",
    "BannermatchError": "errors",
}

__all__ = ["__version__", "audit", "demo", "report", *_EXPORTS]


class _Package(types.ModuleType):
    def __getattribute__(self, name: str) -> Any:
        value = super().__getattribute__(name)
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            return getattr(value, name)
        return value


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'bannermatch' has no attribute {name!r}")
