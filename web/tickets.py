"""Stream tickets: ``EventSource`` cannot send an ``Authorization`` header, so the dashboard
POSTs for a ticket (an HMAC of an expiry time keyed by the API token) and opens the event
stream with ``?ticket=``. A ticket is valid ``TICKET_TTL_S`` seconds and only on
:data:`STREAM_PATH` (``web.middlewares.auth_middleware`` checks it there and nowhere else):
a leaked ticket (it is in a URL) is useless a minute later and never grants another request.
"""

from __future__ import annotations

import hashlib
import hmac
import time

TICKET_TTL_S = 60
STREAM_PATH = "/dashboard/events"  # the one path a ticket opens


def _sign(token: str, expiry: int) -> str:
    return hmac.new(token.encode(), f"sse:{expiry}".encode(), hashlib.sha256).hexdigest()


def make_ticket(token: str, now: float | None = None) -> str:
    """A ticket valid ``TICKET_TTL_S`` seconds from ``now``."""
    expiry = int((now or time.time()) + TICKET_TTL_S)
    return f"{expiry}.{_sign(token, expiry)}"


def check_ticket(token: str, ticket: str, now: float | None = None) -> bool:
    """True if ``ticket`` was made with ``token`` and has not expired."""
    expiry_s, _, sig = ticket.partition(".")
    # ASCII digits only (int() also takes other scripts' digits) and short enough for int()
    if not (expiry_s.isascii() and expiry_s.isdigit() and len(expiry_s) <= 12) or int(expiry_s) < (now or time.time()):
        return False
    return hmac.compare_digest(sig.encode(), _sign(token, int(expiry_s)).encode())
