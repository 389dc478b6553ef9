"""Bids: offers on other people's jobs, and the owner's choice of one."""
