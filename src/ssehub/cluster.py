"""Former home of the cluster state, now :mod:`ssehub.clusterstate` (its names import from here)."""

from __future__ import annotations

from .clusterstate import *  # noqa: F403
from .clusterstate import __all__ as __all__
