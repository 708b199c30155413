"""Every refusal the domain can make: one base class, one line per kind.

The domain never speaks HTTP; `api/errors.py` is the one place that maps these to status
codes, and a stream turns them into dead letters with the message as the reason.
"""

from __future__ import annotations


class AvailabilityError(Exception):
    """Base of every error the availability core raises on purpose."""


class InvalidRules(AvailabilityError):
    """The rules document is invalid; the rules in force stay as they were. Fix the document."""


class UnknownChannel(AvailabilityError):
    """The channel is not in the rules. Add it with PUT /v1/rules or ask for another."""


class InvalidEvent(AvailabilityError):
    """An event failed validation; nothing of it was applied."""


class NotReady(AvailabilityError):
    """A dependency is down or state is still recovering; retry shortly."""


class NoFeed(AvailabilityError):
    """The channel has no `feed` in the rules. Add one with PUT /v1/rules."""


class CursorExpired(AvailabilityError):
    """The cursor is older than the feed's retention. Start again from a snapshot."""


class InvalidCursor(AvailabilityError):
    """The cursor or page token was not made by this feed. Use one it returned."""


class UnknownHold(AvailabilityError):
    """No live hold has this id: never placed, expired, released or committed."""


class HoldsUnavailable(AvailabilityError):
    """The hold could not be decided in time; nothing is held. Retry with the same hold_id."""
