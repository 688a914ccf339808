"""Hook implementations the core provides itself, registered like any pack."""

from __future__ import annotations
