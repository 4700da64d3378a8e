"""The processes that run the saga: its workers, the reaper, the autoscaler and the operator's actions.

Importing the package does nothing: each process's entry point installs the broker (workers.broker).
"""
