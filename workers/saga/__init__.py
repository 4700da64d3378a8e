"""The saga in the workers: its actors, the runner that executes one step, and the worker's entry point."""
