"""The protobuf wire format, as much of it as reading an ONNX file in place needs.

:mod:`ffkit.recipes.onnx_file` walks a model's fields with these over a memory map, skipping
each weight by its length, and re-encodes the fields it keeps when it makes a model's graph
without its weights (:func:`~ffkit.recipes.onnx_file.light_model`). Pure python.
"""

from __future__ import annotations

from typing import Iterator

__all__ = ["varint", "fields", "text", "string_pair", "signed", "encode_varint", "encode_field"]


def varint(buf, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise ValueError("varint too long")


def fields(buf, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(field number, wire type, value or payload start, payload end)``.

    Varint/fixed fields yield their value in the third slot and -1 as end; length-delimited
    fields yield the payload's ``[start, end)`` in the whole buffer.
    """
    pos = start
    while pos < end:
        key, pos = varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = varint(buf, pos)
            yield number, wire, value, -1
        elif wire == 1:
            yield number, wire, int.from_bytes(buf[pos:pos + 8], "little"), -1
            pos += 8
        elif wire == 2:
            length, pos = varint(buf, pos)
            if pos + length > end:
                raise ValueError("field runs past its message")
            yield number, wire, pos, pos + length
            pos += length
        elif wire == 5:
            yield number, wire, int.from_bytes(buf[pos:pos + 4], "little"), -1
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    if pos != end:
        raise ValueError("message overruns its length")


def text(buf, start: int, end: int) -> str:
    return bytes(buf[start:end]).decode("utf-8", errors="replace")


def string_pair(buf, start: int, end: int) -> tuple[str, str]:
    """``(key, value)`` of a StringStringEntryProto (metadata_props, external_data)."""
    key = value = ""
    for num, wire, a, b in fields(buf, start, end):
        if num == 1 and wire == 2:
            key = text(buf, a, b)
        elif num == 2 and wire == 2:
            value = text(buf, a, b)
    return key, value


def signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def encode_varint(value: int) -> bytes:
    """``value`` (>= 0) as a protobuf varint."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_field(buf, number: int, wire: int, a: int, b: int) -> bytes:
    """One field as :func:`fields` yielded it (``number, wire, a, b`` over ``buf``), encoded again."""
    key = encode_varint(number << 3 | wire)
    if wire == 0:
        return key + encode_varint(a)
    if wire == 1:
        return key + a.to_bytes(8, "little")
    if wire == 5:
        return key + a.to_bytes(4, "little")
    return key + encode_varint(b - a) + bytes(buf[a:b])
