"""`python -m workers.autoscale`: the Procfile's and the worker pod's command."""

import typer

from workers.autoscale.supervisor import main

typer.run(main)
