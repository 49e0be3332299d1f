"""Where Steam's services live, how to point bannermatch elsewhere, and what to fetch."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Service:
    """A remote service, with the names a user changes to reach it somewhere else."""

    name: str
    env: str
    option: str
    default: str

    def url(self, override: str | None = None) -> str:
        """The base URL: the option if given, else the environment variable, else the default."""
        return (override or os.environ.get(self.env) or self.default).rstrip("/")

    def hint(self) -> str:
        return f"set {self.env} or {self.option} to use another server"


STEAMSPY = Service("SteamSpy", "BANNERMATCH_STEAMSPY_URL", "--steamspy-url", "https://steamspy.com")
STEAM_API = Service(
    "the Steam Web API",
    "BANNERMATCH_STEAM_API_URL",
    "--steam-api-url",
    "https://api.steampowered.com",
)
STEAM_CDN = Service(
    "the Steam CDN",
    "BANNERMATCH_STEAM_CDN",
    "--cdn-url",
    "https://cdn.cloudflare.steamstatic.com",
)

#: the environment variable holding the Steam Web API key
API_KEY_ENV = "STEAM_API_KEY"

#: asset name -> URL templates tried in order ({cdn} base URL, {appid})
ASSETS: dict[str, tuple[str, ...]] = {
    "library": (
        "{cdn}/steam/apps/{appid}/library_600x900_2x.jpg",
        "{cdn}/steam/apps/{appid}/library_600x900.jpg",
    ),
    "header": ("{cdn}/steam/apps/{appid}/header.jpg",),
    "capsule": ("{cdn}/steam/apps/{appid}/capsule_616x353.jpg",),
    "hero": ("{cdn}/steam/apps/{appid}/library_hero.jpg",),
    "logo": ("{cdn}/steam/apps/{appid}/logo.png",),
}

#: games featured by the original notebooks, always part of the default query set
CURATED_GAMES: dict[str, str] = {
    "620": "Portal 2",
    "364470": "The Elder Scrolls: Legends",
    "504230": "Celeste",
    "583950": "Artifact",
    "646570": "Slay the Spire",
    "863550": "HITMAN 2",
    "794600": "LET IT DIE",
    "814380": "Sekiro: Shadows Die Twice - GOTY Edition",
}

_SECRET_PARAMS = re.compile(r"([?&](?:key|access_token)=)[^&#]*", re.IGNORECASE)


def redact(url: str) -> str:
    """``url`` with any API key replaced, fit for error messages and logs."""
    return _SECRET_PARAMS.sub(r"\1***", url)


def host_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc or url


def is_app_id(item_id: str) -> bool:
    """Steam app ids are positive integers written without leading zeros."""
    return item_id.isdigit() and not item_id.startswith("0")
