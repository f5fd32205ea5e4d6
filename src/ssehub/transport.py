"""Old import path: the same module object as :mod:`ssehub.sdk.transport`."""

import sys

from .sdk import transport

sys.modules[__name__] = transport
