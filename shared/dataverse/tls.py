"""One TLS context for every HTTP client OrgGuard opens to the orgs.

httpx builds a context for each client it opens, loading the CA bundle each time
(about 18 ms of CPU here); a worker opens a client per org, a sweep or a job a pool
of its own. A context is safe to share between clients and threads, so the process
builds it once, the way httpx would (certifi's bundle, or ``SSL_CERT_FILE`` /
``SSL_CERT_DIR`` when set).
"""

from __future__ import annotations

import ssl
from functools import cache


@cache
def tls_context() -> ssl.SSLContext:
    import httpx

    return httpx.create_ssl_context()
