"""Bearer-token authentication for the Flight server, and the rule for non-loopback hosts."""

from __future__ import annotations

import hmac
import ipaddress
import os
from typing import Any

import pyarrow.flight as flight

from synarrow.errors import InvalidArgumentError

MAX_TOKEN_BYTES = 4096


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def check_exposure(host: str, *, token: str | None, insecure: bool) -> None:
    """Refuse to listen beyond loopback without a token, unless ``insecure`` says so."""
    if token is None and not insecure and not is_loopback(host):
        raise InvalidArgumentError(
            f"refusing to serve on {host} without authentication: anyone who can reach "
            "this machine could read and change the database",
            hint="pass --token / --token-file (and --tls-cert/--tls-key), or --insecure "
            "to serve without them anyway",
        )


def read_token(
    *, token: str | None = None, token_file: str | os.PathLike[str] | None = None
) -> str | None:
    """The token given directly or as the first line of a file (``None`` when neither)."""
    if token is not None and token_file is not None:
        raise InvalidArgumentError("give either a token or a token file, not both")
    if token_file is not None:
        try:
            with open(token_file, "rb") as f:
                raw = f.read(MAX_TOKEN_BYTES + 1)
        except OSError as exc:
            raise InvalidArgumentError(f"cannot read the token file {token_file}: {exc}") from exc
        if len(raw) > MAX_TOKEN_BYTES:
            raise InvalidArgumentError(
                f"the token file {token_file} is over {MAX_TOKEN_BYTES} bytes"
            )
        try:
            token = raw.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise InvalidArgumentError(f"the token file {token_file} is not UTF-8") from exc
    if token is None:
        return None
    if not token or len(token) < 8 or any(c.isspace() or not c.isprintable() for c in token):
        raise InvalidArgumentError(
            "a token is at least 8 printable characters without spaces",
            hint='make one with: python -c "import secrets; print(secrets.token_urlsafe(32))"',
        )
    return token


class BearerAuthFactory(flight.ServerMiddlewareFactory):  # type: ignore[misc]
    """Admits a call only if it carries ``authorization: Bearer <token>``.

    Compared in constant time; every Flight and Flight SQL method goes through it, so an
    unauthenticated client gets ``FlightUnauthenticatedError`` before any handler runs.
    """

    def __init__(self, token: str) -> None:
        super().__init__()
        self._expected = f"Bearer {token}".encode()

    def start_call(self, info: Any, headers: dict[str, list[Any]]) -> None:
        """Check the call's ``authorization`` header; raise if it is missing or wrong."""
        for name, values in headers.items():
            if name.lower() != "authorization":
                continue
            for value in values:
                raw = value if isinstance(value, bytes) else str(value).encode()
                if hmac.compare_digest(raw, self._expected):
                    return None
        raise flight.FlightUnauthenticatedError(
            "this synarrow server needs 'authorization: Bearer <token>'"
        )


__all__ = ["BearerAuthFactory", "check_exposure", "is_loopback", "read_token"]
