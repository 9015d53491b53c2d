"""What the notifier says: one plain-text + HTML email per (event, recipient).

Client-supplied text (names) goes into headers only through ``EmailMessage``
with the strict SMTP policy, after CR/LF and other control characters are
stripped, so a name can never add a header; in the HTML part it is escaped.

Internationalised addresses: the domain is always sent IDNA-encoded
(``bücher.example`` -> ``xn--bcher-kva.example``); a non-ASCII local part
(``jürgen@``) makes the message an SMTPUTF8 one, which the SMTP sender only
sends to a server that offers SMTPUTF8 (otherwise a permanent failure).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8

from eventlog.events import (
    BackupFailed,
    BillingAnomalyDetected,
    ClientPaused,
    ClientResumed,
    RestoreDrillCompleted,
    StorageFloorReached,
)

NOTIFIED_TYPES = (
    ClientPaused.event_type,
    ClientResumed.event_type,
    BillingAnomalyDetected.event_type,
)
# Not an event: an email to the operators queued by the service itself (dead letters,
# unservable tenants); its data carries the subject and the text.
OPERATIONS_ALERT = "operations.alert"
# Fleet facts no client is told about: operations (VP_OPS_EMAIL) only.
OPERATIONS_TYPES = (
    StorageFloorReached.event_type,
    BackupFailed.event_type,
    RestoreDrillCompleted.event_type,
)
OPERATIONS_NAME = "VectorPanda operations"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def clean(text: str, limit: int = 200) -> str:
    """One line of text: control characters (CR, LF, ...) become spaces."""
    return _CONTROL.sub(" ", text).strip()[:limit]


@dataclass(frozen=True, slots=True)
class Notice:
    """The facts an email is built from."""

    event_id: str
    event_type: str
    client_id: str
    client_name: str
    data: dict[str, object]


class UnusableAddress(ValueError):
    """An address no email can ever be sent to (a permanent failure)."""


def mailbox(address: str) -> tuple[str, str]:
    """(local part, ASCII domain) of ``address``; UnusableAddress when there is none."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain or _CONTROL.search(address):
        raise UnusableAddress(f"not an email address: {address[:100]!r}")
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise UnusableAddress(f"the domain {domain[:100]!r} has no IDNA form: {exc}") from None
    return local, ascii_domain


def subject_and_body(notice: Notice) -> tuple[str, str]:
    name, cid = clean(notice.client_name), notice.client_id
    match notice.event_type:
        case "operations.alert":
            return clean(str(notice.data.get("subject", "VectorPanda alert"))), str(
                notice.data.get("text", "")
            )
        case ClientPaused.event_type:
            reason = clean(str(notice.data.get("reason", "")))
            how = "automatically" if notice.data.get("automatic") else "by an operator"
            return (
                f"VectorPanda account paused: {name}",
                f"The VectorPanda account '{name}' ({cid}) was paused {how}.\n"
                f"Reason: {reason}\n\n"
                "Its data is kept safe in cold storage and nothing is deleted. While paused, "
                "API requests are answered with 423. To resume, reply to this email or ask "
                f"the operators (admin: POST /admin/v1/clients/{cid}/resume).",
            )
        case StorageFloorReached.event_type:
            worker, store = (
                clean(str(notice.data.get("worker_id"))),
                clean(str(notice.data.get("store"))),
            )
            free, floor = notice.data.get("free_bytes"), notice.data.get("min_free_bytes")
            return (
                f"VectorPanda worker {worker}: {store} store short of space",
                f"The {store} store of worker {worker} has {free} bytes free, below its floor "
                f"of {floor} bytes (VP_MIN_FREE_BYTES). Writes there (upserts, updates, new "
                "collections) are refused with 507 insufficient_storage; reads and deletes "
                "still work.\nFree space on that volume or grow it; writes resume on their "
                "own, without a restart. /readyz lists every store short of space.",
            )
        case BackupFailed.event_type:
            backup = clean(str(notice.data.get("backup_id")))
            cid = clean(str(notice.data.get("client_id") or cid))
            return (
                f"VectorPanda backup failed: {cid}",
                f"Backup {backup} of client {cid} failed: "
                f"{clean(str(notice.data.get('reason')), 500)}\n"
                "The client's earlier backups are kept. Check the workers and the backup "
                f"store, then retry: POST /admin/v1/clients/{cid}/backups",
            )
        case RestoreDrillCompleted.event_type:
            ok = bool(notice.data.get("ok"))
            failures = notice.data.get("failures")
            named = failures[:50] if isinstance(failures, list) else []
            listed = "\n".join(clean(str(f), 300) for f in named)
            return (
                f"VectorPanda restore drill {'passed' if ok else 'FAILED'}",
                f"The restore drill restored the newest backup of {notice.data.get('clients')} "
                f"clients ({notice.data.get('bytes')} bytes) into a scratch directory and "
                f"compared checksums and counts.\n"
                + ("Every backup restored intact." if ok else f"Failures:\n{listed}"),
            )
        case ClientResumed.event_type:
            return (
                f"VectorPanda account resumed: {name}",
                f"The VectorPanda account '{name}' ({cid}) was resumed; its API keys work again.",
            )
        case _:
            observed, baseline = notice.data.get("observed"), notice.data.get("baseline")
            hours, metric = notice.data.get("window_hours"), clean(str(notice.data.get("metric")))
            return (
                f"VectorPanda usage alert: {name}",
                f"Usage of the VectorPanda account '{name}' ({cid}) is far above its usual "
                f"level: {metric} in the last {hours} h: {observed} (trailing daily average "
                f"{baseline}).\nIf this is expected, no action is needed; otherwise check for "
                "a runaway job or a leaked API key.",
            )


def build_email(notice: Notice, sender: str, recipient: str, domain: str) -> EmailMessage:
    """The email for one recipient; Message-ID is derived from (event, recipient).

    Raises UnusableAddress (or another ValueError) when no such email can exist.
    """
    subject, text = subject_and_body(notice)
    local, recipient_domain = mailbox(recipient)
    msg = EmailMessage(policy=SMTP if local.isascii() else SMTPUTF8)
    msg["From"] = sender
    msg["To"] = Address(clean(notice.client_name), local, recipient_domain)
    msg["Subject"] = subject
    token = re.sub(r"[^A-Za-z0-9]", "", recipient)[:64]
    msg["Message-ID"] = f"<{notice.event_id}.{token}@{domain}>"
    msg.set_content(text)
    paragraphs = "".join(f"<p>{html.escape(p)}</p>" for p in text.split("\n") if p)
    msg.add_alternative(f"<html><body>{paragraphs}</body></html>", subtype="html")
    return msg
