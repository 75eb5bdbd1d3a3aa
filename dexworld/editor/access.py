"""Who may use a running editor: loopback binds are this machine's; a network bind needs a token in the URL.

viser has no authentication: every websocket client gets the whole scene and may press every button. For a
non-loopback bind the editor closes, before it receives anything, each websocket connection whose path is not
``/<token>``. The page itself (viser's static client) is public; its ``?websocket=ws://HOST:PORT/<token>``
parameter tells it where to connect, so the URL to open is ``http://HOST:PORT/?websocket=ws://HOST:PORT/<token>``.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import socket


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` serves this machine only (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def new_token() -> str:
    return secrets.token_urlsafe(18)


def editor_url(host: str, port: int, token: str | None) -> str:
    """The URL to open: plain for loopback binds, with the websocket token otherwise (wildcard binds are shown with
    this machine's name)."""
    if token is None:
        return f"http://{host}:{port}"
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    return f"http://{host}:{port}/?websocket=ws://{host}:{port}/{token}"


def require_token(server, token: str) -> None:
    """Close every websocket connection to the viser ``server`` whose path is not ``/<token>``, first thing.

    Uses viser's websocket layer (``viser.infra``): its connect callbacks run before any message is sent to the
    client or read from it, and its raw connection carries the HTTP request. ``tests/test_editor_access.py`` checks
    this against the installed viser.
    """
    ws = server._websock_server
    expected = token.encode()

    async def gate(client) -> None:
        conn = ws._live_connections.get(client.client_id)
        if conn is None:
            return
        path = conn.request.path.partition("?")[0].strip("/") if conn.request is not None else ""
        if not hmac.compare_digest(path.encode(), expected):
            await conn.close(1008, "dexworld editor: open the URL with the token that `dexworld edit` printed")

    ws._client_connect_cb.insert(0, gate)
