"""The operations console and its API (admins only)."""
