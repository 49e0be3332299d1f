"""What tests share: the repository's paths, CLI runners (``cli``), stand-in servers for
Steam (``steam``) and for the served collection (``servers``), and bad inputs
(``bad_inputs``), and the cores a worker computes on (``cores``). Fixtures live in
``tests/conftest.py`` and use these."""

from pathlib import Path

#: the repository's root
ROOT = Path(__file__).resolve().parents[2]
#: the project's shared real data (covers, IGDB covers, edge cases, Steam snapshots)
SHARED_DATA = ROOT.parent / "shared" / "data"
