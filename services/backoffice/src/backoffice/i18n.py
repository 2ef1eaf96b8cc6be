"""Languages and formats: English and Romanian texts, money, numbers and dates per locale.

The language is the user's choice (the `bo_lang` cookie, set by the switch in the page header)
or else the best match of the browser's `Accept-Language`, else English. Texts are gettext
catalogues (`translations/<lang>.po`), read with Babel when the process starts: translators
edit the .po file and nothing has to be compiled.

Money, numbers and dates are formatted with Babel for the locale, in the chain's currency and
time zone when the API has told us those (`ChainProfile`). Without them, amounts are shown as
numbers with the digits the API gave (the currency is not guessed) and times in the offset the
API gave them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from functools import cache
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal, get_currency_symbol

#: language code -> its own name (what the switch shows)
LANGUAGES: dict[str, str] = {"en": "English", "ro": "Română"}
DEFAULT_LANGUAGE = "en"
#: the Babel locale each language formats with
_BABEL_LOCALE = {"en": "en_GB", "ro": "ro_RO"}
LANG_COOKIE = "bo_lang"

_ACCEPT_ITEM = re.compile(
    r"^\s*([A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*|\*)\s*(?:;\s*q=([0-9.]+))?\s*$"
)


def negotiate(cookie: str | None, accept_language: str | None) -> str:
    """The language to render in: the cookie's choice, else the browser's best, else English."""
    if cookie in LANGUAGES:
        return str(cookie)
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate((accept_language or "").split(",")[:20]):
        match = _ACCEPT_ITEM.match(item)
        if not match:
            continue
        try:
            quality = float(match.group(2)) if match.group(2) else 1.0
        except ValueError:
            continue
        if quality > 0:
            ranked.append((-quality, position, match.group(1).lower()))
    for _, _, tag in sorted(ranked):
        primary = tag.split("-")[0]
        if primary in LANGUAGES:
            return primary
    return DEFAULT_LANGUAGE


@cache
def catalogue(language: str) -> dict[str, str]:
    """msgid -> msgstr of a language's .po file (English is the msgids themselves)."""
    if language == DEFAULT_LANGUAGE:
        return {}
    source = resources.files("backoffice") / "translations" / f"{language}.po"
    with source.open("rb") as handle:
        parsed = read_po(handle, locale=language)
    return {
        str(message.id): str(message.string)
        for message in parsed
        if message.id and isinstance(message.id, str) and message.string and not message.fuzzy
    }


class Translator:
    """gettext for one language, in the shape Jinja2's i18n extension installs."""

    def __init__(self, language: str) -> None:
        self.language = language
        self._messages = catalogue(language)

    def gettext(self, message: str) -> str:
        return self._messages.get(message, message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        # both languages' plurals are spelt out as separate msgids (no Plural-Forms table)
        return self.gettext(singular if n == 1 else plural)


@dataclass(frozen=True)
class ChainProfile:
    """The chain's currency (ISO 4217) and IANA time zone, each None while the API has not
    said it to this user."""

    currency: str | None = None
    timezone: str | None = None

    @classmethod
    def from_api(cls, *bodies: Any) -> ChainProfile:
        """The first `currency` / `timezone` found in any of these API answers."""
        currency = timezone = None
        for body in bodies:
            if not isinstance(body, dict):
                continue
            if currency is None and _is_currency(body.get("currency")):
                currency = str(body["currency"])
            if timezone is None and _zone(body.get("timezone")) is not None:
                timezone = str(body["timezone"])
        return cls(currency, timezone)

    @property
    def zone(self) -> tzinfo | None:
        return _zone(self.timezone)

    @property
    def complete(self) -> bool:
        return self.currency is not None and self.timezone is not None


def _is_currency(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(r"[A-Z]{3}", value) is not None


def _zone(value: Any) -> tzinfo | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


class Formatter:
    """Formats the API's values (decimal strings, ISO dates, RFC 3339 times) for one locale and
    one chain; every method takes what the API gave and returns text (empty for null)."""

    def __init__(self, language: str, profile: ChainProfile) -> None:
        self.language = language
        self.locale = Locale.parse(_BABEL_LOCALE.get(language, "en_GB"))
        self.profile = profile

    @property
    def currency_label(self) -> str:
        """The currency's symbol for column headers ("" when unknown)."""
        if not self.profile.currency:
            return ""
        return str(get_currency_symbol(self.profile.currency, locale=self.locale))

    def money(self, value: Any) -> str:
        amount = _decimal(value)
        if amount is None:
            return ""
        if self.profile.currency:
            return str(format_currency(amount, self.profile.currency, locale=self.locale))
        return self.number(value)

    def number(self, value: Any) -> str:
        """A decimal string with exactly the digits the API gave, grouped for the locale."""
        amount = _decimal(value)
        if amount is None:
            return ""
        text = str(value)
        digits = len(text.split(".", 1)[1]) if "." in text else 0
        pattern = "#,##0" + ("." + "0" * digits if digits else "")
        return str(format_decimal(amount, format=pattern, locale=self.locale))

    def integer(self, value: Any) -> str:
        if value is None or value == "":
            return ""
        return str(format_decimal(int(value), locale=self.locale))

    def date(self, value: Any) -> str:
        if not value:
            return ""
        try:
            day = value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
        except ValueError:
            return str(value)
        return str(format_date(day, format="medium", locale=self.locale))

    def datetime(self, value: Any) -> str:
        """An API time in the chain's zone (else in the offset the API gave it)."""
        if not value:
            return ""
        try:
            moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        except ValueError:
            return str(value)
        zone = self.profile.zone or moment.tzinfo
        text = str(format_datetime(moment, format="medium", tzinfo=zone, locale=self.locale))
        if self.profile.zone is None and moment.utcoffset() is not None:
            # without the chain's zone, say which offset the time is in
            text += " " + _offset(moment)
        return text


def _offset(moment: datetime) -> str:
    offset = moment.utcoffset()
    assert offset is not None
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def N_(message: str) -> str:  # noqa: N802 - the gettext convention for "mark, translate later"
    """Marks a constant text as translatable (found by the catalogue check, translated where
    it is shown)."""
    return message
