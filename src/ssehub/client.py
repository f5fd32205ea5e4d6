"""Old import path: the same module object as :mod:`ssehub.sdk.client`."""

import sys

from .sdk import client

sys.modules[__name__] = client
