"""The CloudEvents HTTP binding as intake speaks it: three content modes, one list of events.

- structured: `Content-Type: application/cloudevents+json`, the body is one event;
- batch: `Content-Type: application/cloudevents-batch+json`, the body is a JSON array of events;
- binary: `ce-*` headers carry the attributes, the body is `data` (`Content-Type: application/json`).

Every mode yields events in structured form (plain dicts) for validate_event: nothing is defaulted
or invented here, so a missing id or time is reported, not filled in.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from cloudevents.core.bindings import http as ce_http
from cloudevents.core.formats.json import JSONFormat
from starlette.datastructures import Headers
from starlette.requests import Request

from duban.problems import Problem

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
BINARY_DATA = "application/json"


class MalformedJSON(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    # Python's json reads NaN and Infinity, which are not JSON (RFC 8259): no consumer could read them back.
    raise MalformedJSON(f"{name} is not a JSON value")


def loads(body: bytes) -> Any:
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise MalformedJSON(str(error) if not isinstance(error, RecursionError) else "nested too deeply") from None


class _StrictJSONFormat(JSONFormat):
    """The SDK's JSON format, reading binary-mode data as strict JSON: the stock one turns a body it
    cannot parse into a string, which would surface as a confusing type error on /data."""

    def read_data(self, body: bytes, datacontenttype: str | None) -> Any:
        return loads(body) if body else None


_FORMAT = _StrictJSONFormat()


def _as_structured(attributes: dict[str, Any], data: Any) -> dict[str, Any]:
    # The SDK's event factory, replaced so that nothing is invented: its CloudEvent class would
    # fill a missing id with a fresh UUID (defeating de-duplication) and a missing time with "now".
    event = dict(attributes)
    if data is not None:
        event["data"] = data
    return event


def media_type(headers: Headers) -> str:
    return headers.get("content-type", "").split(";")[0].strip().lower()


def is_binary(headers: Headers) -> bool:
    return any(name.startswith(ce_http.CE_PREFIX) for name in headers.keys())


def events_from(headers: Headers, body: bytes) -> list[Any]:
    """The events of a request body in structured form. Raises Problem 400/415."""
    kind = media_type(headers)
    try:
        if kind == STRUCTURED:
            return [loads(body)]
        if kind == BATCH:
            events = loads(body)
            if not isinstance(events, list) or not events:
                raise Problem(400, "malformed-batch", "a batch is a non-empty JSON array of CloudEvents")
            return events
        if is_binary(headers):
            if kind != BINARY_DATA:
                raise Problem(415, "unsupported-media-type",
                              f"binary mode carries data as {BINARY_DATA}, not {kind or 'nothing'}")
            return [_from_binary(headers, body)]
    except MalformedJSON as error:
        raise Problem(400, "malformed-json", f"the body is not JSON: {error}") from None
    raise Problem(415, "unsupported-media-type",
                  f"send {STRUCTURED}, {BATCH}, or {BINARY_DATA} with ce-* headers (binary mode); not {kind or 'nothing'}")


def _from_binary(headers: Headers, body: bytes) -> dict[str, Any]:
    # ce-time is kept out of the SDK, which parses it with dateutil: that would accept forms the
    # contract refuses (a space for the T, no seconds, no offset…) and lose the department's text.
    # The header is read as the SDK reads the others: percent-decoded. The content type's
    # parameters (charset=utf-8) are dropped: JSON is UTF-8, and datacontenttype is the bare type.
    message_headers = {name: value for name, value in headers.items() if name != "ce-time"}
    message_headers["content-type"] = BINARY_DATA
    event = ce_http.from_binary(ce_http.HTTPMessage(message_headers, body), _FORMAT, _as_structured)
    if "ce-time" in headers:
        event["time"] = unquote(headers["ce-time"])
    return event


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it exceeds `limit` bytes: a declared length is
    checked before reading, and a chunked body is counted while it streams, never held whole."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


def _too_large(limit: int) -> Problem:
    # Closing the connection stops the client's upload; otherwise the server would go on receiving
    # (and discarding) the rest of the body to keep the connection alive.
    return Problem(413, "body-too-large", f"the body exceeds {limit} bytes; send fewer events per batch",
                   headers={"Connection": "close"})
