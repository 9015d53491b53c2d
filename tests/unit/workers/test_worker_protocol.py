"""Frames round-trip exactly; anything malformed is a ProtocolError, never a crash."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest

from workers.protocol import (
    ErrorCode,
    ProtocolError,
    decode_frame,
    encode_frame,
    header_length,
    reply_error,
)


def test_round_trip_keeps_header_and_arrays_exactly() -> None:
    vectors = np.random.default_rng(0).standard_normal((5, 7), dtype=np.float32)
    ids = np.arange(3, dtype=np.int64)
    header = {"op": "upsert", "rid": 42, "tenant": "t1", "ids": ["a", "b"], "meta": [None, {}]}
    frame = decode_frame(encode_frame(header, {"vectors": vectors, "ids": ids}))
    assert frame.header == header
    assert frame.op == "upsert" and frame.rid == 42
    assert frame.arrays["vectors"].tobytes() == vectors.tobytes()
    assert frame.arrays["vectors"].shape == (5, 7)
    assert frame.arrays["ids"].dtype == np.int64
    assert frame.arrays["ids"].tolist() == [0, 1, 2]


def test_the_header_length_leaves_the_arrays_out() -> None:
    # The worker decodes frames with large headers in a thread; large arrays are views.
    header = {"op": "query", "rid": 1}
    vectors = np.zeros((1000, 384), dtype=np.float32)
    frame = encode_frame(header, {"queries": vectors})
    head = orjson.dumps({**header, "arrays": [["queries", "<f4", [1000, 384]]]})
    assert header_length(frame) == len(head) < 100 < len(frame)
    assert header_length(b"ab") == 0


def test_error_reply_round_trip() -> None:
    frame = decode_frame(encode_frame(reply_error(7, ErrorCode.NOT_OWNER, "moved")))
    assert frame.header["ok"] is False
    assert frame.header["error"] == {"code": "not_owner", "message": "moved"}


def _with_header(header: object, tail: bytes = b"") -> bytes:
    head = orjson.dumps(header)
    return struct.pack("<I", len(head)) + head + tail


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01\x00",
        struct.pack("<I", 1000) + b"{}",
        struct.pack("<I", 3) + b"{x}",
        _with_header([1, 2]),
        _with_header({"op": "q", "arrays": [["v", "<f4", [2, 2]]]}, b"\0" * 8),
        _with_header({"op": "q", "arrays": [["v", "|O", [1]]]}, b"\0" * 8),
        _with_header({"op": "q", "arrays": [["v", "nonsense", [1]]]}, b"\0" * 8),
        _with_header({"op": "q", "arrays": [["v"]]}),
        _with_header({"op": "q"}, b"extra"),
    ],
)
def test_malformed_frames_raise_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_frame(data)


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.float32).reshape(3, 4).T,  # not contiguous
        np.arange(6, dtype=">f4").reshape(2, 3),
        np.array([True, False, True]),
        np.zeros((0, 384), dtype=np.float32),
        np.zeros((3, 0), dtype=np.int64),
        np.float32(2.5) * np.ones((), dtype=np.float32),
        np.frombuffer(b"body bytes", dtype=np.uint8),
    ],
)
def test_any_layout_is_sent_as_its_c_order_bytes(array: np.ndarray) -> None:
    wire = encode_frame({"op": "reply", "rid": 3}, {"a": array})
    sent = np.ascontiguousarray(array)  # what the frame always held (a scalar: 1-D)
    head = orjson.dumps(
        {"op": "reply", "rid": 3, "arrays": [["a", sent.dtype.str, list(sent.shape)]]}
    )
    assert wire == struct.pack("<I", len(head)) + head + sent.tobytes()
    got = decode_frame(wire).arrays["a"]
    assert got.dtype == sent.dtype and got.shape == sent.shape
    assert np.array_equal(got, sent)


def test_object_arrays_stay_refused_after_other_dtypes_were_seen() -> None:
    vectors = np.ones((1, 4), dtype=np.float32)
    for _ in range(2):
        assert decode_frame(encode_frame({"op": "q"}, {"v": vectors})).arrays["v"].shape == (1, 4)
        with pytest.raises(ProtocolError):
            decode_frame(_with_header({"op": "q", "arrays": [["v", "|O", [1]]]}, b"\0" * 8))
