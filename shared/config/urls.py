"""The one loopback rule: where plain http and the local development token are allowed.

Bearer tokens must not cross a network in clear, so OrgGuard speaks plain http only to
loopback addresses (the sandbox, a local OrgGuard); every other URL must be https.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import SplitResult, urlsplit


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback(url: str) -> bool:
    """Whether ``url`` names this machine (``localhost`` or a loopback address, not a name that merely starts so)."""
    return is_loopback_host(urlsplit(url).hostname or "")


def bearer_target(url: str, what: str) -> SplitResult:
    """``url`` split, when a bearer token may be sent there: http(s) with a host, plain http on loopback only.

    ``what`` names the URL in the ``ValueError`` otherwise ("an org URL", "the discovery service")."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} needs an http(s) URL with a host")
    if parts.scheme == "http" and not is_loopback(url):
        raise ValueError(f"{what}: plain http is allowed only on loopback (a bearer token would travel in clear)")
    return parts
