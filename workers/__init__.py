"""The Procrastinate side of jobboard: the queue app, its tasks and the job processors."""
