"""The saga: its rules (pure), its steps, and the adapters to the outside world."""
