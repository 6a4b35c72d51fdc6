"""The one loopback rule: where plain http and the local development token are allowed.

Bearer tokens must not cross a network in clear, so OrgGuard speaks plain http only to
loopback addresses (the sandbox, a local OrgGuard); every other URL must be https.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


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
