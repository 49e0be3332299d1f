"""``bannermatch serve``: a JSON API and a web page over one collection (FastAPI).

FastAPI is imported on first use of :func:`create_app` or :func:`serve`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bannermatch.present.server.app import create_app
    from bannermatch.present.server.data import ServedCollection
    from bannermatch.present.server.run import serve

__all__ = ["ServedCollection", "create_app", "serve"]
_EXPORTS = {"create_app": "app", "ServedCollection": "data", "serve": "run"}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'bannermatch.present.server' has no attribute {name!r}")
