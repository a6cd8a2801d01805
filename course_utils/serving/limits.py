"""Connection limits of the p4 service (issue 35): a header timeout and a cap on open connections.

uvicorn arms a timeout only after a response (``timeout_keep_alive``): a client that opens a
connection and then sends its request line and headers a byte at a time holds that connection,
a file descriptor and a buffer for as long as it likes (a "slowloris"; measured before this module:
1,500 such connections all still open after 25 s). The standard answer is a reverse proxy in front
(nginx's ``client_header_timeout`` and ``limit_conn``); this module gives the service the same two
limits on its own, so it is safe without one:

- **header timeout**: the request line and headers must arrive within ``header_timeout_s`` seconds
  of the connection opening (or, on a kept-alive connection, of the first byte of the next
  request), else the connection is closed. The body has its own limit (``--body-timeout``, 408).
- **connection cap**: at most ``max_connections`` open connections per worker; one more is
  answered ``503`` with ``Retry-After`` and closed at once, before anything is read.

Together they bound what a slow client can hold (``max_connections`` descriptors for at most
``header_timeout_s`` seconds), and an honest client whose request arrives at once is unaffected.
``connection_settings(...)`` returns the ``uvicorn.Config`` arguments (``http=`` a protocol class).
"""
from __future__ import annotations

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 40\r\n"
        b"Retry-After: 1\r\nConnection: close\r\n\r\ntoo many open connections; retry later\r\n")


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header timeout and a connection cap (class attributes, set by
    ``connection_settings``)."""

    header_timeout_s: float = 10.0
    max_connections: int = 256

    def connection_made(self, transport):
        super().connection_made(transport)
        self._header_timer = None
        if len(self.connections) > self.max_connections:
            transport.write(BUSY)
            transport.close()
            return
        self._arm()

    def _arm(self):
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _disarm(self):
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            self._disarm()
        elif self.conn.their_state is h11.IDLE:  # a request line or headers still arriving
            self._arm()
        else:  # the head is complete: the body timeout of the app takes over
            self._disarm()

    def _header_timeout(self):
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc):
        self._disarm()
        super().connection_lost(exc)


def connection_settings(header_timeout_s: float = 10.0, max_connections: int = 256, keep_alive_s: float = 5.0) -> dict:
    """``uvicorn.Config`` arguments: the guarded protocol and the idle keep-alive timeout."""
    if not header_timeout_s > 0 or not keep_alive_s > 0:
        raise ValueError(f"header_timeout_s and keep_alive_s must be > 0, got {header_timeout_s!r}, {keep_alive_s!r}")
    if not isinstance(max_connections, int) or max_connections < 1:
        raise ValueError(f"max_connections must be an integer >= 1, got {max_connections!r}")
    protocol = type("GuardedH11Protocol", (GuardedH11Protocol,),
                    {"header_timeout_s": float(header_timeout_s), "max_connections": max_connections})
    return {"http": protocol, "timeout_keep_alive": keep_alive_s}
