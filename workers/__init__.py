"""Dramatiq actors for every saga step and compensation; importing this package declares them all.

`dramatiq workers` (the Procfile's worker) imports it: the broker first, then the actors.
"""

from __future__ import annotations

from workers import broker as broker
from workers import compensations as compensations
from workers import steps as steps
