"""What operators and maintenance do to jobs: cancel and retry, the lifeline that rescues
jobs orphaned by dead workers, and the retention purge."""
