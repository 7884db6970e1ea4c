"""External systems: personal data Lethe cannot reach by SQL (a CRM, a mail provider, a team).

A manifest declaring ``kind: external`` names no database. It says what the system holds and
why (purpose, legal basis, categories, recipients: names or ``{name, client}``), which identity
names it needs to find the subject, how it is told about a request (``notify: manual`` or
``notify: {webhook: <id>}``, a subscription of ``/v1/webhooks``) and how long it has to report
back (``due``, ISO 8601). It is stored as a manifest version like a database manifest, without
reflection.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any, Literal

import msgspec

from app.manifest.durations import IsoDuration, parse_duration
from app.manifest.issues import Issue, raise_for_errors
from app.manifest.loading import load_manifest, parse_document
from app.manifest.model import Manifest, RecipientEntry, Spec, recipients_of

__all__ = ("ExternalSystem", "WebhookNotify", "is_external", "load_any", "load_external")

_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_Text = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
_Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")]


class WebhookNotify(Spec, frozen=True):
    """Tell the system through one webhook subscription (its id, from ``POST /v1/webhooks``)."""

    webhook: uuid.UUID


class ExternalSystem(Spec, frozen=True):
    """A system with no database: it gets a task per request and reports back when done."""

    kind: Literal["external"]
    system: _Name
    purpose: _Text
    legal_basis: _Text
    identities: Annotated[tuple[_Name, ...], msgspec.Meta(min_length=1, max_length=16)]
    """Identity names (as in requests' ``identities``) the system needs to find the subject."""
    notify: Literal["manual"] | WebhookNotify = "manual"
    due: IsoDuration = "P7D"
    """How long the system has to report a task done (counted from the task's creation)."""
    categories: tuple[_Text, ...] = ()
    recipients: tuple[RecipientEntry, ...] = ()
    """Who receives the system's data: names, or ``{name, client}`` (told of rectifications and
    erasures, Art. 19; see :class:`app.manifest.model.Recipient`)."""
    version: int = 1

    @property
    def webhook(self) -> uuid.UUID | None:
        """The subscription told about tasks, or None for ``manual``."""
        return self.notify.webhook if isinstance(self.notify, WebhookNotify) else None


def is_external(document: Any) -> bool:
    """Whether a parsed (or stored) manifest document declares ``kind: external``."""
    return isinstance(document, dict) and document.get("kind") == "external"


def load_external(data: Any) -> ExternalSystem:
    """Convert a parsed ``kind: external`` document.

    Raises:
        ManifestInvalid: a key is missing, unknown or malformed; ``errors[0].field`` names it.
    """
    try:
        system = msgspec.convert(data, ExternalSystem, strict=True)
    except msgspec.ValidationError as exc:
        match = _AT.match(str(exc))
        message = match.group("message") if match else str(exc)
        path = (match.group("path") or "").lstrip(".") if match else ""
        named = re.search(r"(?:unknown|missing required) (?:key|field) `([^`]+)`", message)
        if named:
            path = f"{path}.{named.group(1)}" if path else named.group(1)
        raise_for_errors([Issue(kind="structure", path=path or "$", message=message)], "external system")
        raise  # pragma: no cover - raise_for_errors raised
    try:
        parse_duration(system.due)
    except ValueError as exc:
        raise_for_errors([Issue(kind="structure", path="due", message=str(exc))], "external system")
    try:
        recipients_of(system.recipients)
    except ValueError as exc:
        raise_for_errors([Issue(kind="structure", path="recipients", message=str(exc))], "external system")
    return system


def load_any(text: str | bytes, fmt: Literal["yaml", "json"] | None = None) -> Manifest | ExternalSystem:
    """Decode a manifest document: an :class:`ExternalSystem` for ``kind: external``, else a
    database :class:`Manifest` (see :func:`app.manifest.loading.load_manifest`)."""
    data = parse_document(text, fmt)
    if is_external(data):
        return load_external(data)
    return load_manifest(text, fmt)
