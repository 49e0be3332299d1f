"""Catalogue snapshot files, recognised by their content.

Formats:

- SteamSpy ``request=all`` (or ``top100in2weeks``): ``{"570": {"name": ..., ...}, ...}``
- a Steam Web API page: ``{"response": {"apps": [{"appid": .., "name": ..}, ...]}}``
  (``IStoreService/GetAppList``; ``{"applist": {"apps": [...]}}`` of the older
  ``ISteamApps/GetAppList`` too)
- a list of app ids with an aligned list of names: ``vertical_banner_app_ids_*.json``
  and ``vertical_banner_app_names_*.json`` beside it (or ``--names FILE``)
- a list of app ids alone, such as the top-100 list: a ranking, used as the query set
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bannermatch.errors import BannermatchError

App = tuple[str, str]  # (app id, name; "" when unknown)

_FORMATS = (
    "a SteamSpy `all` reply {appid: {name, ...}}, a Steam Web API GetAppList reply, "
    "or a JSON list of app ids (with its names file)"
)


@dataclass(frozen=True)
class Snapshot:
    path: Path
    kind: str  # steamspy | webapi | ids+names | top
    apps: list[App]

    @property
    def is_top_list(self) -> bool:
        return self.kind == "top"


def _read_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise BannermatchError(f"{what} not found: {path}") from None
    except UnicodeDecodeError:
        raise BannermatchError(
            f"{path} is not a JSON text file: unknown {what} format; expected {_FORMATS}"
        ) from None
    except OSError as exc:
        raise BannermatchError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BannermatchError(
            f"{path} is not JSON ({exc.msg} at line {exc.lineno}): expected {_FORMATS}"
        ) from None


def _app_id(value: Any, path: Path) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise BannermatchError(f"{path}: {value!r} is not a Steam app id")
    text = str(value).strip()
    if not text.isdigit():
        raise BannermatchError(f"{path}: {value!r} is not a Steam app id")
    return str(int(text))


def _name(value: Any) -> str:
    return " ".join(str(value).split()) if value is not None else ""


def steamspy_apps(data: dict[str, Any], path: Path) -> list[App]:
    """Apps of a SteamSpy ``{appid: {name, ...}}`` object."""
    return [(_app_id(v.get("appid", k), path), _name(v.get("name"))) for k, v in data.items()]


def webapi_apps(apps: list[Any], path: Path) -> list[App]:
    out = []
    for app in apps:
        if not isinstance(app, dict) or "appid" not in app:
            raise BannermatchError(f"{path}: an entry of `apps` has no appid: {app!r:.80}")
        out.append((_app_id(app["appid"], path), _name(app.get("name"))))
    return out


def names_file_for(path: Path) -> Path | None:
    """The names file that belongs beside an ids file (``*_ids_*`` -> ``*_names_*``)."""
    name = path.name
    for ids, names in (("_ids_", "_names_"), ("_ids.", "_names."), ("ids", "names")):
        if ids in name:
            candidate = path.with_name(name.replace(ids, names, 1))
            if candidate != path:
                return candidate
    return None


def load_snapshot(path: str | Path, names: str | Path | None = None) -> Snapshot:
    """Read a snapshot file in any of the known formats; a clear error for anything else."""
    path = Path(path)
    data = _read_json(path, "snapshot file")
    if names is not None and not isinstance(data, list):
        raise BannermatchError(f"--names goes with a JSON list of app ids, and {path} is not one")
    if isinstance(data, dict):
        for wrapper in ("response", "applist"):
            inner = data.get(wrapper)
            if isinstance(inner, dict) and isinstance(inner.get("apps", []), list):
                return Snapshot(path, "webapi", webapi_apps(inner.get("apps", []), path))
        values_ok = all(isinstance(v, dict) for v in data.values())
        if data and values_ok and all(str(k).strip().isdigit() for k in data):
            return Snapshot(path, "steamspy", steamspy_apps(data, path))
    elif isinstance(data, list) and data and all(isinstance(v, int | str) for v in data):
        if all(str(v).strip().isdigit() and not isinstance(v, bool) for v in data):
            ids = [_app_id(v, path) for v in data]
            return _with_names(path, ids, Path(names) if names is not None else None)
    elif isinstance(data, list) and data and all(isinstance(v, dict) for v in data):
        return Snapshot(path, "webapi", webapi_apps(data, path))
    if not data:
        raise BannermatchError(f"{path} is empty: it lists no apps")
    raise BannermatchError(f"{path}: unknown catalogue snapshot format; expected {_FORMATS}")


def _with_names(path: Path, ids: list[str], names_path: Path | None) -> Snapshot:
    beside = names_file_for(path)
    if names_path is None and beside is not None and beside.is_file():
        names_path = beside
    if names_path is None:
        if "_ids_" in path.name or path.name.endswith("_ids.json"):
            raise BannermatchError(
                f"{path} lists app ids without names, and {beside} is not beside it: "
                "pass the aligned names file with --names FILE"
            )
        return Snapshot(path, "top", [(i, "") for i in ids])
    names = _read_json(names_path, "names file")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise BannermatchError(f"{names_path} is not a JSON list of names")
    if len(names) != len(ids):
        raise BannermatchError(
            f"{names_path} has {len(names)} names for the {len(ids)} app ids of {path}: "
            "they must be aligned by position"
        )
    return Snapshot(path, "ids+names", [(i, _name(n)) for i, n in zip(ids, names, strict=True)])
