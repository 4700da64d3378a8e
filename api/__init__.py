"""The intake HTTP API (FastAPI): orders, catalogue, health and metrics."""
