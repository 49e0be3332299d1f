"""Every Steam host, path and URL shape bannermatch uses, in one place.

Store art today: the store API (``IStoreBrowseService/GetItems`` with
``include_assets``) names each app's current files, and an asset's URL is
``<cdn>/store_item_assets/`` + the reply's ``asset_url_format`` with
``${FILENAME}`` replaced by the file. Art uploaded or replaced since 2024 sits at
a hashed path that only the API knows, and the ``t=`` stamp in the format changes
when the art changes. The legacy ``<cdn>/steam/apps/<appid>/<file>`` URLs are a
fallback for when the API cannot be reached: they 404 for new art and keep
serving the previous art of replaced art.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit


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
    "https://shared.akamai.steamstatic.com",
)

#: the environment variable holding the Steam Web API key, and where to get one
API_KEY_ENV = "STEAM_API_KEY"
API_KEY_PAGE = "https://steamcommunity.com/dev/apikey"

#: ``--asset`` name -> the store API's asset fields, best first
ASSET_FIELDS: dict[str, tuple[str, ...]] = {
    "library": ("library_capsule_2x", "library_capsule"),
    "hero": ("library_hero_2x", "library_hero"),
    "header": ("header",),
    "capsule": ("main_capsule",),
    "logo": ("library_logo_2x", "library_logo"),
}

#: ``--asset`` name -> legacy URL templates ({cdn} base URL, {appid}), tried in order when the
#: store API cannot be reached
LEGACY_TEMPLATES: dict[str, tuple[str, ...]] = {
    "library": (
        "{cdn}/steam/apps/{appid}/library_600x900_2x.jpg",
        "{cdn}/steam/apps/{appid}/library_600x900.jpg",
    ),
    "hero": ("{cdn}/steam/apps/{appid}/library_hero.jpg",),
    "header": ("{cdn}/steam/apps/{appid}/header.jpg",),
    "capsule": ("{cdn}/steam/apps/{appid}/capsule_616x353.jpg",),
    "logo": ("{cdn}/steam/apps/{appid}/logo.png",),
}
ASSETS = tuple(ASSET_FIELDS)

#: the store API's method for items and their assets, and the removed app list
GET_ITEMS_PATH = "/IStoreBrowseService/GetItems/v1/"
APP_LIST_PATH = "/IStoreService/GetAppList/v1/"
#: the store API's name for a language (``--language``), as in its ``context``
LANGUAGES = (
    "english", "french", "german", "italian", "spanish", "latam", "portuguese", "brazilian",
    "russian", "polish", "japanese", "koreana", "schinese", "tchinese", "turkish", "ukrainian",
    "dutch", "swedish", "danish", "norwegian", "finnish", "czech", "hungarian", "romanian",
    "thai", "vietnamese", "greek", "bulgarian", "indonesian", "arabic",
)  # fmt: skip

STORE_PAGE = "https://store.steampowered.com/app/{appid}/"
STEAMDB_PAGE = "https://steamdb.info/app/{appid}/"


def store_page_url(appid: str) -> str:
    """The Steam store page of an app."""
    return STORE_PAGE.format(appid=appid)


def steamdb_url(appid: str) -> str:
    """The SteamDB page of an app."""
    return STEAMDB_PAGE.format(appid=appid)


def asset_url(cdn: str, url_format: str, filename: str) -> str:
    """The URL of one asset from the store API's ``asset_url_format`` and file name."""
    return f"{cdn.rstrip('/')}/store_item_assets/" + url_format.replace("${FILENAME}", filename)


def legacy_urls(asset: str, appid: str, cdn: str | None = None) -> list[str]:
    """The legacy URLs of an asset (a fallback: they may 404 or serve old art)."""
    base = STEAM_CDN.url(cdn)
    return [t.format(cdn=base, appid=appid) for t in LEGACY_TEMPLATES[asset]]


def art_stamp(url: str) -> str | None:
    """The ``t=`` stamp of an asset URL: it changes when the art changes."""
    values = parse_qs(urlsplit(url).query).get("t")
    return values[-1] if values else None


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
