"""Plans: limits per user (docs/operations.md, "Plans"); the quotas themselves are in
jobboard/quotas.py."""
