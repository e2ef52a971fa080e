"""Unit tests for the bounded HTTP server's request framing and descriptor budget (no sockets)."""

from __future__ import annotations

import resource

import pytest

from npuobs.boundedhttp import Limits, _body_length, _parse_head, _Reject, connection_budget, raise_nofile_limit

pytestmark = pytest.mark.unit


def test_parse_head_lowercases_names_and_joins_repeats() -> None:
    method, target, version, headers = _parse_head(
        b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: text/plain\r\naccept: */*\r\n\r\n")
    assert (method, target, version) == ("GET", "/metrics?x=1", "HTTP/1.1")
    assert headers == {"host": "a", "accept": "text/plain, */*"}


@pytest.mark.parametrize(("head", "status"), [
    (b"GET /\r\n\r\n", 400),                                  # no version
    (b"GET / HTTP/2.0\r\n\r\n", 505),
    (b"GET http://x/ HTTP/1.1\r\n\r\n", 400),                 # absolute-form target
    (b"GE T / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n folded: x\r\n\r\n", 400),           # obs-fold
    (b"GET / HTTP/1.1\r\nNo colon\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
])
def test_malformed_heads_are_rejected_with_a_status(head: bytes, status: int) -> None:
    with pytest.raises(_Reject) as err:
        _parse_head(head)
    assert err.value.status == status


@pytest.mark.parametrize(("method", "headers", "expected"), [
    ("GET", {}, 0),
    ("POST", {"content-length": "12"}, 12),
    ("POST", {}, 411),
    ("POST", {"content-length": "-1"}, 400),
    ("POST", {"content-length": "abc"}, 400),
    ("POST", {"content-length": "+5"}, 400),
    ("POST", {"content-length": " 5"}, 400),
    ("POST", {"content-length": "\u00b2"}, 400),              # a digit to str.isdigit, not to HTTP
    ("POST", {"content-length": "9" * 30}, 400),
    ("POST", {"transfer-encoding": "chunked"}, 411),
])
def test_body_length(method: str, headers: dict[str, str], expected: int) -> None:
    if expected >= 400:
        with pytest.raises(_Reject) as err:
            _body_length(method, headers)
        assert err.value.status == expected
    else:
        assert _body_length(method, headers) == expected


def test_soft_file_limit_is_raised_to_the_hard_limit_and_a_reserve_kept() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        assert raise_nofile_limit() == (hard, hard) == resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        budget = connection_budget(Limits(max_connections=10**6))  # raises the limit again
        assert budget <= (hard if hard != resource.RLIM_INFINITY else 10**6) - Limits().fd_reserve
        assert connection_budget(Limits(max_connections=10)) == 10
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
