"""Old import path: the same module object as :mod:`ssehub.sdk.parser`."""

import sys

from .sdk import parser

sys.modules[__name__] = parser
