"""Old import path: the same module object as :mod:`ssehub.sdk.agent`."""

import sys

from .sdk import agent

sys.modules[__name__] = agent
