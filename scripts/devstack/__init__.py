"""The local stack for development: embedded Postgres and Redis, child processes, the demo (needs orderflow[local])."""
