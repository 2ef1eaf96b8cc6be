"""Staff accounts (api.md "Staff accounts"): users, signing in, the sign-in limit, tokens that
end when their user is deleted, on every gateway instance, and passwords that reach neither
the logs nor the database."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from pos_gateway.bootstrap import Gateway
from pos_gateway.entrypoints.app import build_public_app
from servicekit.db import make_engine, make_session_factory

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"


async def create_user(
    harness: Any,
    key: str,
    *,
    email: str | None = None,
    role: str = "customer_service",
    name: str = "Ioana Rusu",
    password: str = PASSWORD,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    body = {
        "email": email or f"{uuid.uuid4().hex[:8]}@kids.example.ro",
        "name": name,
        "role": role,
        "password": password,
    }
    return await harness.client.post(
        "/v1/users", json=body, headers={**harness.auth(key), **(headers or {})}
    )


async def user(harness: Any, key: str, **kw: Any) -> dict[str, Any]:
    created = await create_user(harness, key, **kw)
    assert created.status_code == 201, created.text
    return dict(created.json())


async def sign_in(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD
) -> httpx.Response:
    return await client.post("/v1/sessions", json={"email": email, "password": password})


async def token_of(harness: Any, admin: str, role: str = "customer_service", **kw: Any) -> str:
    made = await user(harness, admin, role=role, **kw)
    signed = await sign_in(harness.client, made["email"], kw.get("password", PASSWORD))
    assert signed.status_code == 201, signed.text
    return str(signed.json()["access_token"])


@pytest.fixture
async def second_instance(harness: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Another gateway process on the same database (its own pool, its own app)."""
    engine = make_engine(os.environ["GATEWAY_DATABASE_URL"], pool_size=2)
    # the same settings object, so a test's changes to them hold on both instances
    gw = Gateway(harness.gateway.settings)
    gw.start(make_session_factory(engine))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=build_public_app(gw)), base_url="http://gw2.test"
    ) as client:
        yield client
    await gw.stop()
    await engine.dispose()


# --------------------------------------------------------------------------- users


async def test_an_admin_creates_users_and_lists_them_by_email_page_by_page(harness: Any) -> None:
    admin, _ = await harness.setup()
    made = [
        await user(harness, admin, email=f"{c}@kids.example.ro", name=f"User {c}") for c in "cab"
    ]
    assert set(made[0]) == {"user_id", "email", "name", "role", "created_at"}
    assert made[0]["email"] == "c@kids.example.ro" and made[0]["role"] == "customer_service"
    first = await harness.client.get("/v1/users", params={"limit": 2}, headers=harness.auth(admin))
    assert first.status_code == 200, first.text
    assert [u["email"] for u in first.json()["items"]] == ["a@kids.example.ro", "b@kids.example.ro"]
    rest = await harness.client.get(
        "/v1/users",
        params={"limit": 2, "cursor": first.json()["next"]},
        headers=harness.auth(admin),
    )
    assert [u["email"] for u in rest.json()["items"]] == ["c@kids.example.ro"]
    assert rest.json()["next"] is None
    assert "password" not in str(first.json()) and "hash" not in str(first.json())


async def test_a_forged_user_list_cursor_with_a_nul_character_is_a_422_never_a_500(
    harness: Any,
) -> None:
    admin, _ = await harness.setup()
    forged = base64.urlsafe_b64encode(json.dumps(["a\x00", str(uuid.uuid4())]).encode())
    page = await harness.client.get(
        "/v1/users", params={"cursor": forged.decode()}, headers=harness.auth(admin)
    )
    assert page.status_code == 422, page.text
    assert page.json()["errors"][0]["field"] == "cursor"


async def test_a_manager_creates_users_and_customer_service_may_not(harness: Any) -> None:
    admin, _ = await harness.setup()
    manager = await token_of(harness, admin, role="manager")
    by_manager = await create_user(harness, manager, role="manager")
    assert by_manager.status_code == 201, by_manager.text
    service = await token_of(harness, admin)
    refused = await create_user(harness, service)
    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden"
    assert (await harness.client.get("/v1/users", headers=harness.auth(service))).status_code == 403


async def test_emails_are_unique_across_chains_whatever_their_case(harness: Any) -> None:
    admin, _ = await harness.setup()
    other_admin = await harness.chain()
    await user(harness, admin, email="Ana.Pop@Kids.example.ro")
    for key, email in (
        (admin, "ana.pop@kids.example.ro"),
        (other_admin, "ANA.POP@KIDS.EXAMPLE.RO"),
    ):
        taken = await create_user(harness, key, email=email)
        assert taken.status_code == 422, taken.text
        assert taken.json()["code"] == "validation_error"
        assert [e["field"] for e in taken.json()["errors"]] == ["email"]


async def test_bad_users_are_refused_naming_the_field(harness: Any) -> None:
    admin, _ = await harness.setup()
    cases = {
        "password": {"password": "eleven char"},
        "email": {"email": "not-an-email"},
        "role": {"role": "admin"},
        "name": {"name": ""},
    }
    for field, change in cases.items():
        body = {
            "email": "x@kids.example.ro",
            "name": "X",
            "role": "manager",
            "password": PASSWORD,
            **change,
        }
        refused = await harness.client.post("/v1/users", json=body, headers=harness.auth(admin))
        assert refused.status_code == 422, (field, refused.text)
        assert [e["field"] for e in refused.json()["errors"]] == [field]
        assert "eleven char" not in refused.text
    assert (await create_user(harness, admin, password="twelve chars")).status_code == 201


async def test_a_retry_with_the_same_key_returns_the_same_user_and_another_password_conflicts(
    harness: Any,
) -> None:
    admin, _ = await harness.setup()
    key = {"Idempotency-Key": "new-user-1"}
    first = await create_user(harness, admin, email="r@kids.example.ro", headers=key)
    again = await create_user(harness, admin, email="r@kids.example.ro", headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    other_password = await create_user(
        harness, admin, email="r@kids.example.ro", headers=key, password="another password!"
    )
    assert other_password.status_code == 409
    assert other_password.json()["code"] == "idempotency_conflict"
    other_name = await create_user(
        harness, admin, email="r@kids.example.ro", headers=key, name="Somebody else"
    )
    assert other_name.status_code == 409
    assert await harness.count("users") == 1


async def test_another_chains_user_is_not_found_and_not_listed(harness: Any) -> None:
    admin, _ = await harness.setup()
    other_admin = await harness.chain()
    theirs = await user(harness, other_admin)
    gone = await harness.client.delete(
        f"/v1/users/{theirs['user_id']}", headers=harness.auth(admin)
    )
    assert gone.status_code == 404
    assert gone.json()["code"] == "not_found"
    listed = await harness.client.get("/v1/users", headers=harness.auth(admin))
    assert listed.json()["items"] == []
    assert (await sign_in(harness.client, theirs["email"])).status_code == 201


# --------------------------------------------------------------------------- sessions


async def test_signing_in_gives_a_bearer_token_with_the_user_its_role_and_chain(
    harness: Any,
) -> None:
    admin, _ = await harness.setup()
    made = await user(harness, admin, email="Mara@Kids.example.ro", name="Mara")
    before = datetime.now().astimezone()
    signed = await sign_in(harness.client, "  mara@kids.EXAMPLE.ro ")
    assert signed.status_code == 201, signed.text
    body = signed.json()
    assert body["user"] == {
        "user_id": made["user_id"],
        "email": "Mara@Kids.example.ro",
        "name": "Mara",
        "role": "customer_service",
        "chain_id": body["chain"]["chain_id"],
    }
    assert body["chain"]["currency"] == "EUR"
    assert body["chain"]["timezone"] == "Europe/Bucharest"
    expires = datetime.fromisoformat(body["expires_at"])
    ttl = harness.gateway.settings.session_ttl_seconds
    assert before + timedelta(seconds=ttl - 5) < expires < before + timedelta(seconds=ttl + 60)
    token = body["access_token"]
    customers = await harness.client.get("/v1/customers", headers=harness.auth(token))
    assert customers.status_code == 200, customers.text
    current = await harness.client.get("/v1/sessions/current", headers=harness.auth(token))
    assert current.json()["user"] == body["user"]
    async with harness.engine.connect() as conn:
        stored = (await conn.execute(sa.text("SELECT token_hash FROM user_sessions"))).scalars()
        assert token not in list(stored)


async def test_a_wrong_email_and_a_wrong_password_get_the_same_401_in_about_the_same_time(
    harness: Any,
) -> None:
    admin, _ = await harness.setup()
    harness.gateway.settings.login_max_failures = 100
    made = await user(harness, admin)
    wrong_password = await sign_in(harness.client, made["email"], "not the password!")
    wrong_email = await sign_in(harness.client, "nobody@kids.example.ro")
    assert wrong_password.status_code == wrong_email.status_code == 401
    assert wrong_password.json() == wrong_email.json()
    assert wrong_password.json()["code"] == "unauthorized"

    async def timed(email: str, password: str) -> float:
        started = time.perf_counter()
        answer = await sign_in(harness.client, email, password)
        assert answer.status_code == 401
        return time.perf_counter() - started

    known, unknown = [], []
    for i in range(5):
        known.append(await timed(made["email"], f"wrong password {i}"))
        unknown.append(await timed(f"nobody{i}@kids.example.ro", f"wrong password {i}"))
    # both check one argon2 hash (tens of ms); without the dummy hash an unknown email
    # would answer in a few ms
    assert statistics.median(unknown) > 0.5 * statistics.median(known), (known, unknown)


async def test_repeated_failures_for_one_email_are_refused_429_on_every_instance(
    harness: Any, second_instance: httpx.AsyncClient
) -> None:
    admin, _ = await harness.setup()
    cfg = harness.gateway.settings
    cfg.login_max_failures = 4
    cfg.login_lockout_seconds = 2.0
    made = await user(harness, admin)
    # the failures alternate between the two instances: they share one count
    for client in (harness.client, second_instance, harness.client, second_instance):
        assert (await sign_in(client, made["email"], "wrong password!")).status_code == 401
    for client in (harness.client, second_instance):
        locked = await sign_in(client, made["email"])  # even the right password waits
        assert locked.status_code == 429, locked.text
        assert locked.json()["code"] == "rate_limited"
        assert 1 <= int(locked.headers["Retry-After"]) <= 2
    # an unknown email is limited the same way, so 429 does not tell that an account exists
    for _ in range(4):
        assert (await sign_in(harness.client, "nobody@kids.example.ro")).status_code == 401
    assert (await sign_in(second_instance, "nobody@kids.example.ro")).status_code == 429
    await asyncio.sleep(2.1)
    assert (await sign_in(second_instance, made["email"])).status_code == 201
    # a success forgets the failures: one more failure is not a lock
    assert (await sign_in(harness.client, made["email"], "wrong again!!")).status_code == 401
    assert (await sign_in(harness.client, made["email"])).status_code == 201


async def test_deleting_a_user_ends_its_tokens_at_once_on_every_instance(
    harness: Any, second_instance: httpx.AsyncClient
) -> None:
    admin, _ = await harness.setup()
    made = await user(harness, admin, role="manager")
    token = (await sign_in(harness.client, made["email"])).json()["access_token"]
    other = (await sign_in(second_instance, made["email"])).json()["access_token"]
    for client in (harness.client, second_instance):
        for key in (token, other):
            assert (await client.get("/v1/settings", headers=harness.auth(key))).status_code == 200
    deleted = await harness.client.delete(
        f"/v1/users/{made['user_id']}", headers=harness.auth(admin)
    )
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["user_id"] == made["user_id"] and deleted.json()["deleted_at"]
    for client in (second_instance, harness.client):
        for key in (token, other):
            gone = await client.get("/v1/settings", headers=harness.auth(key))
            assert gone.status_code == 401
            assert gone.json()["code"] == "unauthorized"
    assert (await sign_in(second_instance, made["email"])).status_code == 401
    again = await harness.client.delete(f"/v1/users/{made['user_id']}", headers=harness.auth(admin))
    assert again.status_code == 404
    # its email may be given to a new user
    assert (await create_user(harness, admin, email=made["email"])).status_code == 201


async def test_a_signed_out_or_expired_token_answers_401(harness: Any) -> None:
    admin, _ = await harness.setup()
    token = await token_of(harness, admin)
    out = await harness.client.delete("/v1/sessions/current", headers=harness.auth(token))
    assert out.status_code == 204
    assert (await harness.client.get("/v1/tasks", headers=harness.auth(token))).status_code == 401
    harness.gateway.settings.session_ttl_seconds = 1
    short = await token_of(harness, admin)
    assert (await harness.client.get("/v1/tasks", headers=harness.auth(short))).status_code == 200
    await asyncio.sleep(1.1)
    assert (await harness.client.get("/v1/tasks", headers=harness.auth(short))).status_code == 401
    # the admin key has no session to end
    assert (
        await harness.client.delete("/v1/sessions/current", headers=harness.auth(admin))
    ).status_code == 403


async def test_a_made_up_staff_token_is_unauthorized(harness: Any) -> None:
    await harness.setup()
    for token in ("st.made-up", "st.", "st." + "A" * 43):
        refused = await harness.client.get("/v1/customers", headers=harness.auth(token))
        assert refused.status_code == 401
        assert refused.json()["code"] == "unauthorized"


# --------------------------------------------------------------------------- tasks


async def test_a_task_completed_with_a_users_token_names_who_completed_it(harness: Any) -> None:
    admin, _ = await harness.setup()
    made = await user(harness, admin, name="Ioana Rusu")
    token = (await sign_in(harness.client, made["email"])).json()["access_token"]
    task_id = str(uuid.uuid4())
    body = {"outcome": "promised", "note": "pays Friday"}
    await harness.client.post(
        f"/v1/tasks/{task_id}/complete", json=body, headers=harness.auth(token)
    )
    await harness.client.post(
        f"/v1/tasks/{task_id}/complete", json=body, headers=harness.auth(admin)
    )
    sent = [r for r in harness.internal.calls if r.url.path.endswith("/complete")]
    assert [json.loads(r.content) for r in sent] == [
        {**body, "completed_by": {"user_id": made["user_id"], "name": "Ioana Rusu"}},
        {**body, "completed_by": None},
    ]


async def test_customer_service_revokes_a_discount_only_where_the_chain_offers_it(
    harness: Any,
) -> None:
    admin, _ = await harness.setup()
    token = await token_of(harness, admin)
    sale = f"/v1/sales/{uuid.uuid4()}/revoke-discount"
    kept = await harness.client.post(sale, headers=harness.auth(token))
    assert kept.status_code == 403
    assert kept.json()["code"] == "forbidden"
    put = await harness.client.put(
        "/v1/settings", json={"overdue_discount": "offer"}, headers=harness.auth(admin)
    )
    assert put.status_code == 200
    offered = await harness.client.post(sale, headers=harness.auth(token))
    assert offered.status_code == 404  # allowed now: that sale does not exist


# --------------------------------------------------------------------------- passwords


async def test_no_password_reaches_the_logs_the_answers_or_the_database(
    harness: Any, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "Sup3r-secret-pass phrase"
    short = "Sh0rt-pass"
    caplog.set_level(logging.DEBUG)
    admin, _ = await harness.setup()
    created_and_retried = [
        await create_user(
            harness,
            admin,
            email="p@kids.example.ro",
            password=secret,
            headers={"Idempotency-Key": "pw-1"},
        )
        for _ in range(2)
    ]
    answers = [
        *created_and_retried,
        await create_user(harness, admin, email="q@kids.example.ro", password=short),
        await sign_in(harness.client, "p@kids.example.ro", secret),
        await sign_in(harness.client, "p@kids.example.ro", secret[::-1]),
        await sign_in(harness.client, "nobody@kids.example.ro", secret),
        await harness.client.post(
            "/v1/sessions", json={"email": "p@kids.example.ro", "password": secret, "extra": 1}
        ),
    ]
    assert [a.status_code for a in answers] == [201, 201, 422, 201, 401, 401, 422]
    for text in (secret, short, secret[::-1]):
        assert all(text not in a.text for a in answers)
        assert text not in caplog.text
    async with harness.engine.connect() as conn:
        tables = (
            (
                await conn.execute(
                    sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                )
            )
            .scalars()
            .all()
        )
        for table in tables:
            dump = str((await conn.execute(sa.text(f'SELECT * FROM "{table}"'))).all())
            for text in (secret, short, secret[::-1]):
                assert text not in dump, table
        stored = await conn.scalar(sa.text("SELECT password_hash FROM users"))
    assert str(stored).startswith("$argon2id$")
