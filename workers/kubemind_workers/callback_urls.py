"""Which callback URLs a job may name: http(s) only, and never a private, loopback or link-local
address (server-side request forgery into the cluster) unless the allow-list setting names it.

Checked when the job is submitted (400 naming callback_url) and again before each delivery, since
a name can resolve elsewhere by then.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

from kubemind.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _refused(address: IPAddress) -> bool:
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


class CallbackPolicy:
    def __init__(self, allow_list: Sequence[str]):
        self.hosts: set[str] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in allow_list:
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.hosts.add(entry.lower())

    def _allowed(self, host: str, address: IPAddress) -> bool:
        return host.lower() in self.hosts or any(address in network for network in self.networks)

    async def check(self, url: object) -> str:
        """The URL, or InvalidInput naming callback_url and what is wrong with it."""
        if not isinstance(url, str) or not url:
            raise InvalidInput("callback_url: required, an http(s) URL", param="callback_url")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise InvalidInput(f"callback_url: malformed URL {url!r}: {exc}", param="callback_url") from None
        if parts.scheme not in ("http", "https"):
            raise InvalidInput(f"callback_url: scheme must be http or https, not {parts.scheme!r}", param="callback_url")
        host = parts.hostname
        if not host:
            raise InvalidInput(f"callback_url: malformed URL {url!r}: no host", param="callback_url")
        for address in await self._resolve(host, port or (443 if parts.scheme == "https" else 80)):
            if _refused(address) and not self._allowed(host, address):
                raise InvalidInput(
                    f"callback_url: {host} resolves to {address}, a private, loopback or link-local address"
                    " (allow it with the callback_allow_list setting)",
                    param="callback_url",
                )
        return url

    @staticmethod
    async def _resolve(host: str, port: int) -> list[IPAddress]:
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            pass
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise InvalidInput(f"callback_url: host {host!r} does not resolve: {exc}", param="callback_url") from None
        return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
