"""Dashboard: status counts as JSON, an HTML page with a chart, and queue health for admins."""
