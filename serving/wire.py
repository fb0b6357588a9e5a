"""Repeated message fields written and read piece by piece, for batches too large for one go.

A maximum-size ``RecommendBatchResponse`` (256 answers of 100 items with explanations, ~4 MB)
took tens of milliseconds to build (its constructor copies every answer) and about as long again
to serialize, each in one go on the event loop while every other caller waited. In protobuf's
wire format a repeated field is the concatenation of its entries, each ``tag, length, bytes``,
so a handler can serialize the answers of each piece of a batch as that piece is done and join
the bytes at the end: the same bytes the message would serialize to (a test parses them back).
Handlers return such answers as ``bytes``; the error interceptor's serializer passes ``bytes``
through unchanged (``serving.interceptors``).

The same holds for a request: decoding a maximum-size ``RecommendBatchRequest`` (2.4 MB, half a
million ids) held the loop for 10-20 ms. ``LazyBatch`` splits the bytes into its requests' (a
scan of 256 lengths) and decodes each request when its piece is checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, overload

from google.protobuf.message import DecodeError

from serving.proto.recsys.v1 import recommender_pb2 as pb

_LENGTH_DELIMITED = 2
_REQUESTS_FIELD = pb.RecommendBatchRequest.DESCRIPTOR.fields_by_name["requests"].number
_RESPONSES_FIELD = pb.RecommendBatchResponse.DESCRIPTOR.fields_by_name["responses"].number


class Serializable(Protocol):
    def SerializeToString(self) -> bytes: ...  # noqa: N802 - protobuf's name


def repeated_field(field_number: int, messages: Iterable[Serializable]) -> bytes:
    """The wire bytes of ``messages`` as the entries of repeated message field ``field_number``."""
    tag = _varint(field_number << 3 | _LENGTH_DELIMITED)
    parts: list[bytes] = []
    for message in messages:
        payload = message.SerializeToString()
        parts += (tag, _varint(len(payload)), payload)
    return b"".join(parts)


def batch_answers(answers: Iterable[pb.RecommendResponse]) -> bytes:
    """``answers`` as a piece of a ``RecommendBatchResponse``'s bytes (pieces join by
    concatenation into the whole answer)."""
    return repeated_field(_RESPONSES_FIELD, answers)


def _varint(value: int) -> bytes:
    """Protobuf's base-128 varint of a non-negative integer, low groups first."""
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def split_repeated(data: bytes, field_number: int) -> list[bytes] | None:
    """The entries of repeated message field ``field_number`` when ``data`` holds nothing else;
    ``None`` when it holds any other field (decode it whole then). Raises ``DecodeError`` for
    bytes that end inside an entry."""
    tag = field_number << 3 | _LENGTH_DELIMITED
    entries: list[bytes] = []
    position, end = 0, len(data)
    while position < end:
        found, position = _read_varint(data, position)
        if found != tag:
            return None
        length, position = _read_varint(data, position)
        if position + length > end:
            raise DecodeError("truncated message: an entry runs past the end")
        entries.append(data[position : position + length])
        position += length
    return entries


class LazyRequests(Sequence[pb.RecommendRequest]):
    """A batch's requests as bytes, each decoded when it is read (``DecodeError`` then)."""

    def __init__(self, entries: list[bytes]) -> None:
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    @overload
    def __getitem__(self, index: int) -> pb.RecommendRequest: ...
    @overload
    def __getitem__(self, index: slice) -> list[pb.RecommendRequest]: ...
    def __getitem__(self, index: int | slice) -> pb.RecommendRequest | list[pb.RecommendRequest]:
        if isinstance(index, slice):
            return [pb.RecommendRequest.FromString(e) for e in self._entries[index]]
        return pb.RecommendRequest.FromString(self._entries[index])


class LazyBatch:
    """A ``RecommendBatchRequest`` whose ``requests`` decode one at a time (see the module)."""

    def __init__(self, requests: LazyRequests) -> None:
        self.requests = requests

    @staticmethod
    def decode(data: bytes) -> LazyBatch | pb.RecommendBatchRequest:
        """The batch in ``data``: lazy when it holds requests alone, else decoded whole."""
        entries = split_repeated(data, _REQUESTS_FIELD)
        if entries is None:
            return pb.RecommendBatchRequest.FromString(data)
        return LazyBatch(LazyRequests(entries))


def _read_varint(data: bytes, position: int) -> tuple[int, int]:
    """(the varint at ``position``, the position after it)."""
    value, shift = 0, 0
    while True:
        if position >= len(data) or shift > 63:
            raise DecodeError("truncated message: a varint runs past the end")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7
