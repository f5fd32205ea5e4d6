"""Old import path: the same module object as :mod:`ssehub.sdk.publisher`."""

import sys

from .sdk import publisher

sys.modules[__name__] = publisher
