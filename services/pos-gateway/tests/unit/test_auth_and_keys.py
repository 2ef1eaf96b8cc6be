"""API keys and the per-terminal rate limit."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from pos_gateway.domain.auth import bearer_token, hash_key, is_operator_token, new_api_key
from pos_gateway.entrypoints.api.auth import TokenBucket


def test_a_new_key_is_a_random_urlsafe_token_stored_only_as_its_sha256() -> None:
    token, stored = new_api_key()
    other, _ = new_api_key()
    assert token != other
    assert len(token) >= 43  # 32 random bytes, base64url
    assert stored == hashlib.sha256(token.encode()).hexdigest() == hash_key(token)
    assert token not in stored


def test_the_operator_token_must_match_exactly() -> None:
    assert is_operator_token("s3cret-token", "s3cret-token")
    assert not is_operator_token("s3cret-toke", "s3cret-token")
    assert not is_operator_token("", "")


def test_only_bearer_authorization_carries_a_key() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer abc") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer ") is None
    assert bearer_token(None) is None


def test_a_terminal_over_its_burst_is_told_how_long_to_wait() -> None:
    bucket = TokenBucket(rate=1.0, burst=2)
    assert bucket.take("t1") == 0
    assert bucket.take("t1") == 0
    wait = bucket.take("t1")
    assert 0 < wait <= 1.0
    assert bucket.take("t2") == 0  # buckets are per key


def test_the_operator_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from pos_gateway.domain import auth

    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", recording)
    assert auth.is_operator_token("s3cret-token", "s3cret-token")
    assert not auth.is_operator_token("s3cret-tokeX", "s3cret-token")
    assert not auth.is_operator_token("anything", "")  # no token configured: nobody is operator
    assert seen == [(b"s3cret-token", b"s3cret-token"), (b"s3cret-tokeX", b"s3cret-token")]
