"""Events: every change a user should hear of, written in the transaction of the change.

`catalogue` is the one table of who hears of what (type, recipient, channels, email
rules); `outbox` builds and writes events (one or many, from the ORM or from SQL), with
their data made by `payloads` through the plug in `building`; `feed` reads them back for
`GET /api/events/` and purges old ones; `emails` renders an event's email. The catalogue,
the plug and the outbox sit below every blueprint, the rest above them (docs/events.md).
"""
