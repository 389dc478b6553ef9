"""Accounts: registration, email verification, tokens and the caller's profile."""
