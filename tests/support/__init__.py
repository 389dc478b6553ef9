"""Helpers that only the tests use (factories, clients, the live worker, the browser).
conftest.py declares fixtures only; tests import helpers from here, and what run.py and
bench/ share with the tests (processes, SMTP sink, databases, wire counter) from
`devtools`."""
