"""Reviews between the parties of a completed job, and public user profiles."""
