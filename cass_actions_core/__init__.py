"""cass-actions: a framework for an autonomous agent that plans and does its own work.

The import is deliberately light (pluggy only): the CLI's ``list`` and ``validate``
paths must start fast and never import the Anthropic SDK. Pack authors need only::

    from cass_actions_core import hookimpl
"""

from __future__ import annotations

import pluggy

__all__ = ["PROJECT_NAME", "ENTRY_POINT_GROUP", "hookimpl", "hookspec", "__version__"]

__version__ = "0.1.0"

#: The pluggy project name; hook implementations must be marked with :data:`hookimpl`.
PROJECT_NAME = "cass_actions"

#: The entry-point group that action packs register under.
ENTRY_POINT_GROUP = "cass_actions"

#: Marker for hook implementations in an action pack.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

#: Marker for hook specifications (used by :mod:`cass_actions_core.hookspecs`).
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
