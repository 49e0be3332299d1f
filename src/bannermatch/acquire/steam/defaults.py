"""Defaults of ``steam catalog`` and ``steam download``, defined once: the library's
functions and the CLI's options both take them from here (a light module: the CLI reads
it to build its help without importing the HTTP stack)."""

# steam catalog
#: seconds between SteamSpy `request=all` pages (SteamSpy's limit), across runs too
STEAMSPY_ALL_INTERVAL = 60.0
#: apps per page of IStoreService/GetAppList (its max_results)
WEBAPI_PAGE_SIZE = 10_000
CATALOG_TIMEOUT = 30.0
CATALOG_RETRIES = 5
CATALOG_BACKOFF = 1.0

# steam download
ASSET = "library"
LANGUAGE = "english"
CONCURRENCY = 16
#: requests per second per host (0: no limit)
RATE = 50.0
RETRIES = 5
BACKOFF = 0.5
MAX_RETRY_AFTER = 120.0
#: seconds without data
TIMEOUT = 30.0
CONNECT_TIMEOUT = 5.0
#: ask the store API again about downloaded games after this many seconds (7 days)
REFRESH_AFTER = 7 * 24 * 3600.0
