"""Lab targets: boards of a team shared through a labgrid coordinator (docs/lab.md)."""
