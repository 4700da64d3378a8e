"""The chaos harness: kill workers, Redis and Postgres and misbehave as providers do, then audit."""
