"""Events: every change a user should hear of, written in the transaction of the change.

`catalogue` is the one table of who hears of what (type, recipient, channels); `outbox`
builds and writes events (one or many, from the ORM or from SQL); `feed` reads them back
for `GET /api/events/` and purges old ones; `emails` renders an event's email.
"""
