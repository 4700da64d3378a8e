"""The worker supervisor: worker processes scaled by the saga queues' backlog (`python -m workers.autoscale`)."""
