"""A backend written the way docs/ARCHITECTURE.md says a newcomer writes one."""
