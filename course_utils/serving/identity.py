"""Who is asking: the identity the rate limit, the query-pattern detector and the quarantine key on.

By default a client is its **peer address**, the one thing an HTTP client cannot choose freely
(it must complete a TCP handshake from it). Anything the client writes itself (``X-Client-ID``,
``X-Forwarded-For``) is ignored, or a Sybil attacker gets a fresh rate limit, a fresh detector
history and a way out of quarantine with every new value (issue 17: 20 of 20 requests answered at
``--rate 2 --burst 5`` by rotating ``X-Client-ID``). The trade-off: users behind one NAT or
carrier-grade NAT share an address, hence one rate limit and one quarantine.

Two documented options change that:

- ``ApiKeys`` (``--api-keys FILE``): a JSON object ``{"client id": "key", ...}`` of keys issued to
  the app's users; every request must carry one as ``X-API-Key`` (401 otherwise) and is then known
  by its client id. The SHA-256 of the key sent is compared with that of every issued key by
  ``hmac.compare_digest`` (fixed length, no early exit; fine for thousands of keys).
  An attacker with many accounts is still a Sybil: issue keys slowly and revoke them.
- ``--trusted-proxies`` (uvicorn's ``forwarded_allow_ips``): only connections from these proxy
  addresses may set the client address with ``X-Forwarded-For``; the default trusts none, not
  even loopback (uvicorn's own default trusts 127.0.0.1). ``uvicorn_proxy_settings`` maps the
  option to uvicorn's arguments.

Identities are short (``peer_identity``: a normalised IP address, else a 16-hex-digit digest), so
a 5,000-character forwarded value never reaches the flag log.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
from pathlib import Path

CLIENT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")  # what a client id in an API-key file may look like
MIN_KEY_CHARS = 16


def peer_identity(host: str | None) -> str:
    """The identity of a peer address (as the ASGI server reports it): the normalised IP address, or
    ``"host:<digest>"`` (bounded length) for anything that is not an IP address."""
    if not host:
        return "unknown"
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return "host:" + hashlib.sha256(host.encode("utf-8", "replace")).hexdigest()[:16]


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "replace")).digest()


class ApiKeys:
    """Issued API keys: ``client(key)`` -> the client id of a valid key, else None.

    keys: ``{client_id: key}``; client ids match ``CLIENT_ID``, keys are strings of at least
    ``MIN_KEY_CHARS`` characters and distinct. Raises ``ValueError`` naming the problem.
    """

    def __init__(self, keys: dict):
        if not isinstance(keys, dict) or not keys:
            raise ValueError("api keys must be a non-empty JSON object {\"client id\": \"key\", ...}")
        self._by_digest: dict[bytes, str] = {}
        for client, key in keys.items():
            if not isinstance(client, str) or not CLIENT_ID.match(client):
                raise ValueError(f"api keys: client id {str(client)[:80]!r} must be 1-64 characters from A-Z a-z 0-9 _ . : -")
            if not isinstance(key, str) or len(key) < MIN_KEY_CHARS:
                raise ValueError(f"api keys: the key of {client!r} must be a string of at least {MIN_KEY_CHARS} characters")
            d = _digest(key)
            if d in self._by_digest:
                raise ValueError(f"api keys: {client!r} and {self._by_digest[d]!r} share a key")
            self._by_digest[d] = client

    @classmethod
    def load(cls, path) -> "ApiKeys":
        """From a JSON file ``{"client id": "key", ...}``; ``ValueError`` if it is missing or malformed."""
        try:
            return cls(json.loads(Path(path).read_text()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"api keys file {path}: {e}") from None

    def __len__(self):
        return len(self._by_digest)

    def client(self, key: str | None) -> str | None:
        if not key:
            return None
        d, found = _digest(key), None
        for stored, client in self._by_digest.items():  # every key, in constant time each: no early exit
            if hmac.compare_digest(stored, d):
                found = client
        return found


def uvicorn_proxy_settings(trusted_proxies=()) -> dict:
    """uvicorn's ``proxy_headers`` / ``forwarded_allow_ips`` for ``--trusted-proxies`` (addresses or
    networks): none trusted by default, so ``X-Forwarded-For`` is ignored, from loopback too."""
    trusted = [str(t).strip() for t in trusted_proxies if str(t).strip()]
    for t in trusted:
        try:
            ipaddress.ip_network(t, strict=False)
        except ValueError:
            raise ValueError(f"trusted proxies must be IP addresses or networks, got {t!r}") from None
    return {"proxy_headers": True, "forwarded_allow_ips": trusted} if trusted else {"proxy_headers": False}
