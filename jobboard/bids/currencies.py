"""The currencies a bid may be priced in: ISO 4217 list one as pycountry ships it (its
data follows the ISO 4217 maintenance agency's amendments, so withdrawn codes such as
BGN, ANG, ZWL or HRK drop out and new ones such as XCG or ZWG come in with an upgrade),
less the codes nobody is paid in."""

from __future__ import annotations

import pycountry

# In list one but not money: fund and accounting codes, precious metals, bond-market
# units, the test code XTS and the "no currency" code XXX.
NOT_MONEY: frozenset[str] = frozenset(
    """
    BOV CHE CHW CLF COU MXV USN UYI UYW XAD XDR XSU XUA
    XAG XAU XPD XPT
    XBA XBB XBC XBD
    XTS XXX
    """.split()
)

ISO_4217_CURRENCY_CODES: frozenset[str] = (
    frozenset(currency.alpha_3 for currency in pycountry.currencies) - NOT_MONEY
)

DEFAULT_CURRENCY = "USD"
