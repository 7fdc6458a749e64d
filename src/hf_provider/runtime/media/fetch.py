"""Image URLs, fetched only from the hosts `[media] url_hosts` allows (none by default).

A server that fetches any URL a client names can be made to reach hosts only it can reach (cloud metadata, admin
ports): server-side request forgery. So a URL is refused, naming the setting, unless its host is allowed; each
redirect is checked the same way (httpx follows none by itself), and the body is read up to the byte limit.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

from hf_provider.errors import InvalidMedia, MediaTooLarge, UrlNotAllowed
from hf_provider.settings.media import MediaSettings

_MAX_REDIRECTS = 3


def host_allowed(host: str, allowed: list[str]) -> bool:
    host = host.lower().rstrip(".")
    for pattern in allowed:
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and host != pattern[2:]:
                return True
        elif host == pattern:
            return True
    return False


def check_url(url: str, limits: MediaSettings, param: str) -> None:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidMedia(f"'{param}' is not an http(s) URL with a host", param=param)
    if not host_allowed(host, limits.url_hosts):
        raise UrlNotAllowed(
            f"'{param}' is a URL on host {host!r}, which this server does not fetch from: allow the host in "
            "[media] url_hosts (HFP_MEDIA__URL_HOSTS), or send the image itself as a data URI "
            "(data:image/png;base64,...)",
            param=param,
        )


def fetch(url: str, limits: MediaSettings, param: str) -> tuple[bytes, str | None]:
    """(body, media type from Content-Type) of an allowed URL; 4xx errors naming `param` otherwise."""
    import httpx

    check_url(url, limits, param)
    try:
        with httpx.Client(timeout=limits.url_timeout_s, follow_redirects=False, trust_env=False) as client:
            for _ in range(_MAX_REDIRECTS + 1):
                with client.stream("GET", url) as r:
                    if r.is_redirect and "location" in r.headers:
                        url = urljoin(url, r.headers["location"])
                        check_url(url, limits, param)
                        continue
                    if r.status_code != 200:
                        raise InvalidMedia(
                            f"'{param}': fetching the image answered HTTP {r.status_code}", param=param
                        )
                    media_type = r.headers.get("content-type", "").split(";")[0].strip().lower() or None
                    body = bytearray()
                    for chunk in r.iter_bytes():
                        body += chunk
                        if len(body) > limits.max_image_bytes:
                            raise MediaTooLarge(
                                f"'{param}': the image at the URL is over {limits.max_image_bytes} bytes "
                                "([media] max_image_bytes)",
                                param=param,
                            )
                    return bytes(body), media_type
    except httpx.HTTPError as e:
        raise InvalidMedia(
            f"'{param}': the image URL could not be fetched ({type(e).__name__})", param=param
        ) from None
    raise InvalidMedia(f"'{param}': the image URL redirected more than {_MAX_REDIRECTS} times", param=param)
