"""Event deliveries as the intake endpoint receives them, read into `Occurrence` values. Pure.

Accepted, per the CloudEvents HTTP protocol binding 1.0.2: binary mode (attributes in ``ce-*``
headers, any body), structured mode (``application/cloudevents+json``), batched mode
(``application/cloudevents-batch+json``); and plain JSON in the seed's style
(``{"event_type", "collection_id", "count", "id"}``, one object or a list). The CloudEvents ``type``
is the event type; the extension attributes ``collectionid`` and ``count`` (default 1: how many
occurrences the event stands for) carry the collection and the count.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_COUNT = 1_000_000  # one event stands for at most this many occurrences
MAX_BATCH = 1000  # events in one request
STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"


@dataclass(frozen=True)
class Occurrence:
    """One delivered event: its CloudEvents attributes (lower-case names, string values)."""

    type: str
    source: str
    id: str | None  # None: the seed's plain JSON without an id, never de-duplicated
    count: int
    attributes: Mapping[str, str]
    # The (source, id) key status remembers, already hashed (`counting.event_keys`): an event read
    # back from the shared inbox (events/inbox.py), which keeps the key and not the pair.
    key: str | None = None

    @property
    def collection_id(self) -> str | None:
        return self.attributes.get("collectionid")

    @property
    def keys(self) -> tuple[str, str] | None:
        """The key status remembers for (source, id), and its former spelling (or None without an id).

        Both are the same 64 bits of SHA-256 (a false duplicate among 1,000 remembered ids has odds of
        1 in 10^16 per event): 11 characters of unpadded base64url now, 16 hex digits before; the hex
        spelling is still looked up, so a retry of an event counted by an older operator is not counted
        again (those ids leave status after `RECENT_EVENT_IDS` later events). Shorter ids make every
        counting write, its answer and its watch event about 5 KB lighter. Kept once hashed: the
        intake, the inbox's entry and its memory of ids ask for the same event's keys (issue 21);
        not `functools.cached_property`, which on Python 3.11 takes one lock for every instance."""
        kept = self.__dict__.get("_keys", self)  # self: not hashed yet (None is a value)
        if kept is self:
            kept = self.__dict__["_keys"] = self._hashed()
        return kept  # type: ignore[no-any-return]

    def _hashed(self) -> tuple[str, str] | None:
        if self.key is not None:  # read back from the inbox: the same 64 bits, hashed at intake
            return self.key, base64.urlsafe_b64decode(self.key + "=").hex()
        if self.id is None:
            return None
        digest = hashlib.sha256(f"{self.source}\0{self.id}".encode()).digest()[:8]
        return base64.urlsafe_b64encode(digest).decode().rstrip("="), digest.hex()


class EventError(ValueError):
    """A delivery that cannot be read; ``detail`` is FastAPI's validation error list, naming fields."""

    def __init__(self, detail: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{'.'.join(str(p) for p in d['loc'])}: {d['msg']}" for d in detail))
        self.detail = detail


class CloudEvent(BaseModel):
    """A CloudEvent in structured mode; extension attributes are allowed (``collectionid``, ``count``, ...)."""

    model_config = ConfigDict(extra="allow")
    specversion: Literal["1.0"]
    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    subject: str | None = None
    collectionid: str | None = None
    count: int = Field(default=1, ge=1, le=MAX_COUNT)
    data: Any = None


class SeedEvent(BaseModel):
    """An event in the seed's plain JSON style."""

    model_config = ConfigDict(extra="forbid")
    event_type: str = Field(min_length=1)
    collection_id: str | None = None
    count: int = Field(default=1, ge=1, le=MAX_COUNT)
    id: str | None = Field(default=None, min_length=1)
    source: str | None = Field(default=None, min_length=1)


def read_delivery(content_type: str, headers: Mapping[str, str], body: bytes) -> list[Occurrence]:
    """The events of one HTTP request; raises `EventError` naming the offending field."""
    media = content_type.split(";")[0].strip().lower()
    lowered = {k.lower(): v for k, v in headers.items()}
    if "ce-specversion" in lowered:
        return [_from_cloudevent(_validate(CloudEvent, _binary_attributes(lowered), ("header",)), ("header",))]
    payload = _json(body)
    if media == STRUCTURED:
        return [_from_cloudevent(_validate(CloudEvent, payload, ("body",)), ("body",))]
    if media == BATCH:
        if not isinstance(payload, list):
            raise EventError([_error(("body",), "a batch is a JSON array of CloudEvents", "list_type")])
        _bounded(payload)
        return [_from_cloudevent(_validate(CloudEvent, item, ("body", i)), ("body", i))
                for i, item in enumerate(payload)]
    if media in ("application/json", ""):
        items = payload if isinstance(payload, list) else [payload]
        _bounded(items)
        loc = (lambda i: ("body", i)) if isinstance(payload, list) else (lambda i: ("body",))
        return [_from_seed(_validate(SeedEvent, item, loc(i)), loc(i)) for i, item in enumerate(items)]
    raise EventError([_error(("header", "content-type"), f"unsupported media type {media!r}: use "
                             f"{STRUCTURED}, {BATCH}, application/json, or binary mode (ce-* headers)",
                             "unsupported_media_type")])


def _binary_attributes(headers: Mapping[str, str]) -> dict[str, Any]:
    return {k.removeprefix("ce-"): v for k, v in headers.items() if k.startswith("ce-")}


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except RecursionError:
        raise EventError([_error(("body",), "not JSON: nested too deeply", "json_invalid")]) from None
    except (ValueError, UnicodeDecodeError) as error:
        raise EventError([_error(("body",), f"not JSON: {error}", "json_invalid")]) from None


def _bounded(items: list[Any]) -> None:
    if len(items) > MAX_BATCH:
        raise EventError([_error(("body",), f"at most {MAX_BATCH} events in one request", "too_long")])


def _validate(model: type[BaseModel], data: Any, loc: tuple[str | int, ...]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise EventError([{"loc": [*loc, *e["loc"]], "msg": e["msg"], "type": e["type"]}
                          for e in error.errors(include_url=False, include_context=False)]) from None


def _error(loc: tuple[str | int, ...], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": list(loc), "msg": msg, "type": kind}


def _unicode(attributes: Mapping[str, str], loc: tuple[str | int, ...]) -> None:
    """JSON's ``\\ud800`` escapes decode to lone surrogates, which no UTF-8 text holds: an event
    carrying one would be stored nowhere (an inbox object, a status write), so it is refused here,
    named, not met by the writer that holds other senders' events too."""
    try:
        "".join(attributes.values()).encode()
    except UnicodeEncodeError:
        name = next(n for n, v in attributes.items() if not _encodes(v))
        raise EventError([_error((*loc, name), "not valid Unicode text: a lone surrogate (an unpaired \\ud800-"
                                 "\\udfff escape)", "string_unicode")]) from None


def _encodes(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _from_cloudevent(event: CloudEvent, loc: tuple[str | int, ...]) -> Occurrence:
    attributes = {"specversion": event.specversion, "id": event.id, "source": event.source, "type": event.type}
    for name, value in {**(event.model_extra or {}), "subject": event.subject,
                        "collectionid": event.collectionid}.items():
        if value is not None and not isinstance(value, (dict, list)):
            attributes[name.lower()] = str(value)
    _unicode(attributes, loc)
    return Occurrence(type=event.type, source=event.source, id=event.id, count=event.count, attributes=attributes)


def _from_seed(event: SeedEvent, loc: tuple[str | int, ...]) -> Occurrence:
    attributes = {"type": event.event_type, "source": event.source or ""}
    if event.collection_id is not None:
        attributes["collectionid"] = event.collection_id
    if event.id is not None:
        attributes["id"] = event.id
    _unicode({"event_type": event.event_type, "source": event.source or "", "id": event.id or "",
              "collection_id": event.collection_id or ""}, loc)  # named as the sender wrote them
    return Occurrence(type=event.event_type, source=event.source or "", id=event.id, count=event.count,
                      attributes=attributes)
