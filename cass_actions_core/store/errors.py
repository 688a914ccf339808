"""The store's errors: everything it refuses is a :class:`StoreError` whose message a person can act on."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


class StoreError(Exception):
    """The store cannot do what was asked; the message is one paragraph a person can act on."""


class StoreUnavailable(StoreError):
    """The store could not be written or read right now (disk full, read-only, locked); nothing was changed.
    The scheduler waits and tries again instead of stopping."""


class NotFoundError(StoreError, LookupError):
    """A row named by id (approval, action run, reservation, unit) does not exist."""


class LeaseHeldError(StoreError):
    """Another live process holds this daemon's scheduler lease."""


class LeaseLostError(StoreError):
    """The caller no longer holds the lease it tries to renew (it expired and was taken over, or was released)."""


def _corrupt(path: Path, detail: str) -> StoreError:
    return StoreError(
        f"{path}: this file is not a readable cass-actions store ({detail}). It was left untouched: "
        "nothing was written to it or deleted. Restore it from a backup, move it aside, or point "
        "--data-dir at another folder."
    )
