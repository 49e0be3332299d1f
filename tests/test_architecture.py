"""The package's import rule: a stage imports only earlier stages and the shared base.

The order is docs/architecture.md's: base < store < acquire < ocr < embed < verify < query <
evaluation < present < cli. Every ``import`` in ``src/bannermatch`` is read (lazy ones
inside functions too), so an import that runs the wrong way fails here by name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import bannermatch

STAGES = ["store", "acquire", "ocr", "embed", "verify", "query", "evaluation", "present", "cli"]
PACKAGE = Path(bannermatch.__file__).parent


def stage(module: str) -> int:
    """The stage's place in the order; -1 for the shared base (``errors``, ``images``, ...)."""
    parts = module.split(".")
    return STAGES.index(parts[1]) if len(parts) > 1 and parts[1] in STAGES else -1


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every bannermatch import in ``path``; relative ones resolved."""
    found = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative imports are not used; resolve them all the same
                base = module_name(path).split(".")
                base = base[: len(base) - node.level + (path.name == "__init__.py")]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names]
            found += [(node.lineno, t) for t in [target, *names] if t.startswith("bannermatch")]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("bannermatch")]
    return found


def wrong_way() -> list[str]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = module_name(path)
        if here == "bannermatch":  # the package's lazy facade names every stage
            continue
        for line, target in imports(path):
            if stage(target) > stage(here):
                out.append(f"{path.relative_to(PACKAGE)}:{line}: {here} imports {target}")
    return sorted(set(out))


def test_imports_run_from_later_stages_to_earlier_ones() -> None:
    assert wrong_way() == []


def test_the_check_sees_a_wrong_way_import(tmp_path, monkeypatch) -> None:
    fake = tmp_path / "bannermatch"
    (fake / "store").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "store" / "__init__.py").write_text("")
    (fake / "store" / "bad.py").write_text("def f():\n    from bannermatch.query import ann\n")
    monkeypatch.setattr(f"{__name__}.PACKAGE", fake)
    assert wrong_way() == [
        "store/bad.py:2: bannermatch.store.bad imports bannermatch.query",
        "store/bad.py:2: bannermatch.store.bad imports bannermatch.query.ann",
    ]


@pytest.mark.parametrize("name", bannermatch.__all__)
def test_the_public_api_keeps_its_names(name: str) -> None:
    assert getattr(bannermatch, name) is not None
    if name != "__version__":
        assert callable(getattr(bannermatch, name))
