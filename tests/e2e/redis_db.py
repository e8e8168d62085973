"""A Redis database of a test's own, on the session's Redis server."""

import urllib.parse


def redis_url_with_db(db: int) -> str:
    """REDIS_URL with another database number (redis://host:port/N or unix://path?db=N)."""
    from django.conf import settings

    parts = urllib.parse.urlsplit(settings.REDIS_URL)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "db"]
    path = parts.path
    if parts.scheme == "unix":
        query.append(("db", str(db)))
    else:
        path = f"/{db}"
    # Not urlunsplit: it would drop the "//" of "unix:///path".
    return f"{parts.scheme}://{parts.netloc}{path}?{urllib.parse.urlencode(query)}"
