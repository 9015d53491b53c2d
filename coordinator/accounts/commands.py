"""Account commands: what an actor asks the control plane to do."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CreateClient:
    name: str
    email: str
    tier: str = "free"
    actor: str = "admin"


@dataclass(frozen=True, slots=True)
class IssueApiKey:
    client_id: str
    scopes: tuple[str, ...]
    label: str | None = None
    actor: str = "admin"


@dataclass(frozen=True, slots=True)
class RevokeApiKey:
    client_id: str
    key_id: str
    actor: str = "admin"


Command = CreateClient | IssueApiKey | RevokeApiKey
