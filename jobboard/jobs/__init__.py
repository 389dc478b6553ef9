"""Jobs: posting, listing, cancelling and retrying jobs, and reading their results."""
