"""One HTTP client for the readiness checks of the stack's own services.

`up` asks each starting service how it is, twice a second, for a minute or more. A new
`httpx.get` builds a client with its TLS context each time (tens of milliseconds of CPU), which
the services starting beside it on a small machine would rather have. The checks share one
client instead, which also keeps the connection to a service that answers. The services are
this machine's own, so no proxy from the environment applies.
"""

from __future__ import annotations

import functools

import httpx


@functools.cache
def _client() -> httpx.Client:
    return httpx.Client(trust_env=False)


def get(url: str, timeout: float) -> httpx.Response:
    """GET `url` with the shared client; httpx.HTTPError when it does not answer."""
    return _client().get(url, timeout=timeout)
