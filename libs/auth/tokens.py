"""Tokens, their hashes and roles (pure)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Literal, get_args

Role = Literal["admin", "viewer"]
ROLES: tuple[Role, ...] = get_args(Role)
PREFIX = "stratus_"


def new_token() -> str:
    """A fresh bearer token: 256 random bits."""
    return PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What the table keeps: sha256 is enough for a high-entropy random token (no salt needed)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who made a request: a token's id, name and role (never the token)."""

    token_id: int
    name: str
    role: Role

    @property
    def label(self) -> str:
        """How the event log names it: ``name#id``."""
        return f"{self.name}#{self.token_id}"

    @property
    def may_mutate(self) -> bool:
        return self.role == "admin"
