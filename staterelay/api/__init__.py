"""REST API v1: JSON over HTTP at ``/api/v1/``, bearer-authenticated, errors as RFC 9457."""

from __future__ import annotations

from staterelay.api.app import create_api_app

__all__ = ["create_api_app"]
