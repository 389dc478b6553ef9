"""The currencies a bid may be priced in."""

from __future__ import annotations

# ISO 4217 list one, the currencies in circulation (amendments through 2025). Left out on
# purpose: fund and accounting codes (BOV, CHE, CHW, CLF, COU, MXV, USN, UYI, UYW, XDR,
# XSU, XUA, XB*), precious metals (XAU, XAG, XPD, XPT), the test code XTS and the
# "no currency" code, since nobody is paid in them; and withdrawn codes, such as BGN
# (euro since 2026), ANG (XCG since 2025), ZWL (ZWG since 2024), SLL (SLE), HRK (euro
# since 2023).
ISO_4217_CURRENCY_CODES: frozenset[str] = frozenset(
    """
    AED AFN ALL AMD AOA ARS AUD AWG AZN
    BAM BBD BDT BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD
    CAD CDF CHF CLP CNY COP CRC CUC CUP CVE CZK
    DJF DKK DOP DZD
    EGP ERN ETB EUR
    FJD FKP
    GBP GEL GHS GIP GMD GNF GTQ GYD
    HKD HNL HTG HUF
    IDR ILS INR IQD IRR ISK
    JMD JOD JPY
    KES KGS KHR KMF KPW KRW KWD KYD KZT
    LAK LBP LKR LRD LSL LYD
    MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN
    NAD NGN NIO NOK NPR NZD
    OMR
    PAB PEN PGK PHP PKR PLN PYG
    QAR
    RON RSD RUB RWF
    SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL
    THB TJS TMT TND TOP TRY TTD TWD TZS
    UAH UGX USD UYU UZS
    VED VES VND VUV
    WST
    XAF XCD XCG XOF XPF
    YER
    ZAR ZMW ZWG
    """.split()
)

DEFAULT_CURRENCY = "USD"
