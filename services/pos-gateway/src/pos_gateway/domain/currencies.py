"""ISO 4217: the currency codes a chain may use, and their minor units (digits after the point).

Python has no such list built in, and a dependency for one table is not worth it. The table is
ISO 4217's list of current currencies and funds (the maintenance agency's "list one", as of
2025), without the codes whose minor unit is "N.A." (gold, silver, platinum, palladium, the
bond-market units, SDR, Sucre, ADB unit, the testing code XTS and "no currency" XXX): a retail
chain's money always has a minor unit. Codes withdrawn from the list (HRK, VEF, CUC, ZWL, ...)
are not in it; a new code is added here when ISO publishes it.
"""

from __future__ import annotations

_BY_MINOR_UNITS: dict[int, str] = {
    0: "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF",
    2: (
        "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD "
        "BTN BWP BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP "
        "ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR "
        "JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU "
        "MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR "
        "RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB "
        "TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD XCG YER ZAR ZMW "
        "ZWG"
    ),
    3: "BHD IQD JOD KWD LYD OMR TND",
    4: "CLF UYW",
}

#: code -> minor units, for every currency a chain may use.
MINOR_UNITS: dict[str, int] = {
    code: units for units, codes in _BY_MINOR_UNITS.items() for code in codes.split()
}


def is_iso_4217(code: str) -> bool:
    return code in MINOR_UNITS
