"""Staff passwords and tokens, and how long repeated sign-in failures lock an email."""

from __future__ import annotations

from pos_gateway.domain import passwords
from pos_gateway.domain.auth import (
    KeyKind,
    Role,
    hash_key,
    is_session_token,
    new_api_key,
    new_session_token,
)
from pos_gateway.service_layer.staff import email_key, lockout_seconds


def test_a_password_is_stored_as_a_salted_argon2id_hash_that_only_it_matches() -> None:
    first = passwords.hash_password("correct horse battery")
    second = passwords.hash_password("correct horse battery")
    assert first.startswith("$argon2id$") and first != second  # a salt of its own
    assert passwords.verify_password(first, "correct horse battery")
    assert not passwords.verify_password(first, "correct horse batterY")
    assert not passwords.verify_password("not a hash", "correct horse battery")
    assert not passwords.needs_rehash(first)


def test_no_password_matches_the_dummy_hash_of_unknown_emails() -> None:
    dummy = passwords.dummy_hash()
    assert dummy.startswith("$argon2id$") and dummy == passwords.dummy_hash()
    assert not passwords.verify_password(dummy, "")
    assert not passwords.verify_password(dummy, "correct horse battery")


def test_a_staff_token_is_told_apart_from_an_api_key_and_stored_as_its_sha256() -> None:
    token, stored = new_session_token()
    assert is_session_token(token) and stored == hash_key(token)
    assert token not in stored
    # "." is not in the base64url alphabet: no API key can look like a staff token
    assert not any(is_session_token(new_api_key()[0]) for _ in range(200))


def test_a_manager_acts_as_the_admin_key_and_customer_service_as_its_own_kind() -> None:
    assert Role.MANAGER.kind is KeyKind.ADMIN
    assert Role.CUSTOMER_SERVICE.kind is KeyKind.CUSTOMER_SERVICE


def test_emails_compare_without_case_and_surrounding_blanks() -> None:
    assert email_key("  Ana.Pop@Kids.EXAMPLE.ro ") == "ana.pop@kids.example.ro"


def test_a_further_failure_after_a_lock_doubles_it_up_to_the_maximum() -> None:
    assert [lockout_seconds(n, 5, 60, 900) for n in (1, 4, 5, 6, 7, 8, 9, 40, 10_000)] == [
        0,
        0,
        60,
        120,
        240,
        480,
        900,
        900,
        900,
    ]
