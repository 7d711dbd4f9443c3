"""fastpush: a realtime fan-out server speaking the nginx push-stream protocol."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
