"""`python -m scripts.devstack.honcho_start start ...`: honcho, waiting long enough for the workers to stop.

Once one process has stopped, honcho SIGKILLs whatever still runs 5 s later (`honcho.manager.KILL_WAIT`, not an
option). The autoscaler gives its workers 30 s to finish their messages after a SIGTERM, and a worker SIGKILLed
mid-message leaves it for redelivery; so here honcho waits procfile.KILL_WAIT_S instead.
"""

from __future__ import annotations

import honcho.command
import honcho.manager

from scripts.devstack.procfile import KILL_WAIT_S

if __name__ == "__main__":
    honcho.manager.KILL_WAIT = KILL_WAIT_S
    honcho.command.main()
