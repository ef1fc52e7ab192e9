"""A Ray actor that imports nothing of the service: its process's RSS is Ray's own cost of a worker."""

from __future__ import annotations

import os


class BareActor:
    def pid(self) -> int:
        return os.getpid()
