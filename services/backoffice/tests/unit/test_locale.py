"""Language choice, and money, numbers and dates formatted for the locale and the chain."""

from __future__ import annotations

from decimal import Decimal

import httpx
from backoffice_helpers import csrf_of, sign_in
from fakegateway import FakeGateway

from backoffice.i18n import ChainProfile, Formatter, negotiate

NBSP = "\u00a0"


def test_the_language_follows_the_cookie_then_the_browser_then_english() -> None:
    assert negotiate(None, "ro-RO,ro;q=0.9,en;q=0.8") == "ro"
    assert negotiate(None, "de-DE,de;q=0.9,ro;q=0.5,en;q=0.4") == "ro"
    assert negotiate(None, "en;q=0.3, ro;q=0.7") == "ro"
    assert negotiate(None, "fr, de") == "en"
    assert negotiate(None, "ro;q=0") == "en"
    assert negotiate(None, "garbage;;;,") == "en"
    assert negotiate("en", "ro") == "en"
    assert negotiate("xx", "ro") == "ro"


def test_money_is_formatted_in_the_chains_currency_for_the_locale() -> None:
    eur = ChainProfile("EUR", "Europe/Bucharest")
    assert Formatter("en", eur).money("-1234.50") == "-€1,234.50"
    assert Formatter("ro", eur).money("-1234.50") == f"-1.234,50{NBSP}EUR"  # CLDR's ro symbol
    assert Formatter("ro", ChainProfile("RON", None)).money("1234.50") == f"1.234,50{NBSP}RON"


def test_without_the_currency_amounts_keep_the_apis_digits_and_no_symbol() -> None:
    unknown = ChainProfile()
    assert Formatter("en", unknown).money("1234.50") == "1,234.50"
    assert Formatter("ro", unknown).money("1234.50") == "1.234,50"
    assert Formatter("ro", unknown).money("7") == "7"
    assert Formatter("en", unknown).number("1.500") == "1.500"
    assert Formatter("en", unknown).money(None) == ""


def test_dates_and_times_are_in_the_locale_and_the_chains_time_zone() -> None:
    bucharest = ChainProfile("EUR", "Europe/Bucharest")
    assert Formatter("en", bucharest).date("2026-01-05") == "5 Jan 2026"
    assert Formatter("ro", bucharest).date("2026-01-05") == "5 ian. 2026"
    # 22:30 UTC on 31 Dec is already the new year in Bucharest
    assert Formatter("ro", bucharest).datetime("2025-12-31T22:30:00+00:00") == (
        "1 ian. 2026, 00:30:00"
    )
    unknown = Formatter("en", ChainProfile())
    assert unknown.datetime("2025-12-31T22:30:00+00:00") == "31 Dec 2025, 22:30:00 UTC+00:00"


def test_the_chain_profile_takes_only_a_real_currency_and_zone_from_the_api() -> None:
    assert ChainProfile.from_api({"currency": "RON", "timezone": "Europe/Bucharest"}) == (
        ChainProfile("RON", "Europe/Bucharest")
    )
    assert ChainProfile.from_api({"currency": "eur", "timezone": "Mars/Olympus"}) == (
        ChainProfile()
    )
    assert ChainProfile.from_api(None, {"timezone": "UTC"}, {"currency": "EUR"}) == (
        ChainProfile("EUR", "UTC")
    )
    assert Formatter("en", ChainProfile("EUR")).money(Decimal("2")) == "€2.00"


async def test_a_romanian_browser_gets_romanian_pages(client: httpx.AsyncClient) -> None:
    page = await client.get("/login", headers={"Accept-Language": "ro-RO,ro;q=0.9"})
    assert '<html lang="ro">' in page.text
    assert "Autentificare" in page.text and "Parolă" in page.text


async def test_the_language_switch_is_kept_in_a_cookie(client: httpx.AsyncClient) -> None:
    await sign_in(client, "cs@example.com")
    page = await client.get("/customers")
    switched = await client.post(
        "/lang", data={"lang": "ro", "next": "/customers", "csrf_token": csrf_of(page.text)}
    )
    assert switched.status_code == 303 and switched.headers["location"] == "/customers"
    assert "bo_lang=ro" in switched.headers["set-cookie"]
    again = await client.get("/customers", headers={"Accept-Language": "en"})
    assert "Clienți" in again.text and "Sold bonusuri" in again.text


async def test_pages_use_the_currency_and_zone_when_the_api_gives_them(
    client: httpx.AsyncClient, fake: FakeGateway
) -> None:
    fake.chain = {
        "chain_id": "c",
        "name": "Lanț",
        "currency": "RON",
        "timezone": "Europe/Bucharest",
    }
    fake.add_customer("Ana", debt="1234.50")
    await sign_in(client, "cs@example.com")
    client.cookies.set("bo_lang", "ro")
    page = await client.get("/customers")
    assert f"1.234,50{NBSP}RON" in page.text


async def test_a_manager_gets_the_currency_from_the_settings_when_they_carry_it(
    client: httpx.AsyncClient, fake: FakeGateway
) -> None:
    fake.settings.update(currency="EUR", timezone="Europe/Bucharest")
    fake.add_customer("Ana", debt="1234.50")
    await sign_in(client, "ana@example.com")
    page = await client.get("/customers")
    assert "€1,234.50" in page.text
