"""StateRelay: self-hosted virtual smart-home devices for Alexa, IFTTT, a dashboard and an API."""

from __future__ import annotations

__version__ = "0.1.0"
