"""Header handling and framing helpers of the builtin router."""

from __future__ import annotations

from corral.routers.builtin.http1 import chunk, end_to_end, error_answer, header_value


def test_hop_by_hop_headers_and_the_ones_connection_names_are_dropped() -> None:
    headers = [(b"Host", b"x"), (b"Connection", b"keep-alive, X-Trace"), (b"X-Trace", b"1"),
               (b"Keep-Alive", b"timeout=5"), (b"Transfer-Encoding", b"chunked"),
               (b"Upgrade", b"h2c"), (b"TE", b"trailers"), (b"Content-Length", b"3"),
               (b"X-Kept", b"yes")]
    assert end_to_end(headers) == [(b"Host", b"x"), (b"X-Kept", b"yes")]


def test_header_lookup_ignores_case_and_returns_the_first_value() -> None:
    headers = [(b"X-Request-Id", b"a"), (b"x-request-id", b"b")]
    assert header_value(headers, b"x-request-id") == b"a"
    assert header_value(headers, b"missing") is None


def test_a_chunk_carries_its_length_in_hex() -> None:
    assert chunk(b"x" * 26) == b"1a\r\n" + b"x" * 26 + b"\r\n"


def test_an_error_answer_is_complete_and_says_why() -> None:
    answer = error_answer(503, "no backend", request_id=b"r1", close=True)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"Content-Length: %d" % len(body) in head
    assert b"Connection: close" in head and b"X-Request-Id: r1" in head
    assert b"no backend" in body


def test_an_error_answer_to_head_has_no_body() -> None:
    answer = error_answer(502, "down", request_id=b"r", close=False, head_only=True)
    assert answer.endswith(b"\r\n\r\n") and b"down" not in answer
