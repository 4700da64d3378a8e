"""Operator tools: the orderctl CLI, the local stack, the demo, benchmarks."""
