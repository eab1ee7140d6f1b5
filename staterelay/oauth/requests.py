"""aiohttp requests as authlib ``OAuth2Request`` snapshots, read fully before validation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web
from authlib.oauth2.rfc6749 import OAuth2Payload, OAuth2Request
from multidict import MultiMapping


class Parameters(OAuth2Payload):  # type: ignore[misc]
    """Request parameters with every value kept, so repeated ones can be refused."""

    def __init__(self, params: MultiMapping[Any]) -> None:
        self._datalist: dict[str, list[str]] = {}
        for key in dict.fromkeys(params.keys()):
            self._datalist[key] = [v if isinstance(v, str) else "" for v in params.getall(key)]
        self._data = {key: values[0] for key, values in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        """The first value of each parameter."""
        return self._data

    @property
    def datalist(self) -> dict[str, list[str]]:
        """Every value of each parameter."""
        return self._datalist

    def repeated(self) -> str | None:
        """The first parameter given more than once (RFC 6749 section 3.1), or None."""
        for key, values in self._datalist.items():
            if len(values) > 1:
                return key
        return None


class Snapshot(OAuth2Request):  # type: ignore[misc]
    """An ``OAuth2Request`` built from a request that has been read in full.

    The URI is the configured public base URL plus the path and query, never the socket's
    address: authlib's transport check then sees what the client saw.
    """

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Mapping[str, str],
        payload: Parameters,
        *,
        args: Mapping[str, str],
        form: Mapping[str, str],
    ) -> None:
        super().__init__(method, uri, headers=headers)
        self.payload = payload
        self._args = args
        self._form = form

    @property
    def args(self) -> Mapping[str, str]:
        """The query parameters (first values)."""
        return self._args

    @property
    def form(self) -> Mapping[str, str]:
        """The form body parameters (first values)."""
        return self._form


def query_snapshot(request: web.Request, base_url: str) -> Snapshot:
    """The authorization endpoint's request: parameters from the query string only.

    Raises authlib's ``InsecureTransportError`` when the base URL is neither https nor
    loopback.
    """
    params = Parameters(request.query)
    return Snapshot(
        request.method,
        base_url + request.path_qs,
        request.headers,
        params,
        args=params.data,
        form={},
    )


def form_snapshot(request: web.Request, form: MultiMapping[Any], base_url: str) -> Snapshot:
    """A token or revocation request: parameters from the form body only (not the query)."""
    params = Parameters(form)
    return Snapshot(
        request.method,
        base_url + request.path_qs,
        request.headers,
        params,
        args={},
        form=params.data,
    )
