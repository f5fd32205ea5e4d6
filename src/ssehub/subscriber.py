"""Old import path: the same module object as :mod:`ssehub.sdk.subscriber`."""

import sys

from .sdk import subscriber

sys.modules[__name__] = subscriber
