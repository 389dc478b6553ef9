"""Plans: limits per user (SPEC §9); the quotas themselves are in jobboard/quotas.py."""
