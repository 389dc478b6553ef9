"""Mail tasks."""
