"""The dashboard's settings (who may see it, and how long a login lasts), a part of
``bot.settings.Settings`` kept in a module of its own so that each stays small."""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class DashboardSettings(BaseSettings):
    dashboard: bool = Field(
        default=True,
        description="Serve the dashboard pages (/, /runs/ID, /playbooks, ...); false: they "
        "answer 404, and `baton serve` may listen beyond loopback without `users:`.",
    )
    trusted_proxies: str = Field(
        default="",
        description="Addresses (CIDRs, comma-separated) of the SSO proxies whose "
        "BATON_PROXY_USER_HEADER names the person logged in; the header is ignored "
        "from any other address.",
    )
    proxy_user_header: str | None = Field(
        default=None,
        description="Header an SSO proxy names the logged-in person in (X-Forwarded-User): "
        "their name under `users:`; unset: people log in with their token.",
    )
    session_ttl: str = Field(
        default="12h",
        description="How long a dashboard login lasts (a duration: 12h, 30m, 7d).",
    )
    login_rate: str = Field(
        default="10/1m",
        description="Dashboard login attempts one address may make (COUNT/PERIOD); "
        "beyond it 429 until the period has passed.",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: str) -> str:
        proxy_networks(value)  # ValueError names the entry
        return value

    @field_validator("session_ttl")
    @classmethod
    def _ttl(cls, value: str) -> str:
        from engine.playbooks.durations import parse_duration

        if parse_duration(value).total_seconds() < 60:
            raise ValueError("a login should last at least a minute (1m)")
        return value

    @field_validator("login_rate")
    @classmethod
    def _rate(cls, value: str) -> str:
        from engine.playbooks.model import parse_rate

        parse_rate(value)  # ValueError says how to write it
        return value

    @property
    def session_seconds(self) -> float:
        from engine.playbooks.durations import parse_duration

        return parse_duration(self.session_ttl).total_seconds()

    @property
    def proxies(self) -> tuple[Network, ...]:
        return proxy_networks(self.trusted_proxies)


def proxy_networks(text: str) -> tuple[Network, ...]:
    """``10.0.0.0/8, 192.168.1.5`` -> the networks; a bad entry is a ValueError naming it."""
    networks = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(
                f"{entry!r} is not an address or a CIDR (10.0.0.0/8, 192.168.1.5, ::1)"
            ) from None
    return tuple(networks)


def is_loopback(host: str) -> bool:
    """True when ``host`` (BATON_HOST) only takes connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to any address
