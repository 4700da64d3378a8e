"""The processes of one chaos run (loopback Stripe and carrier, API, reaper, saga and webhook workers), each in its
own process group."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.config import LOCAL_CARRIER_KEY, LOCAL_STRIPE_KEY
from pipeline.saga import SAGA_QUEUES, WEBHOOK_QUEUE
from scripts.devstack import localstack
from scripts.devstack.processes import Child, python, venv_tool, wait_until_answers

WEBHOOK_SECRET = "whsec_chaos_local_only"


class ChaosStack:
    """The processes of one chaos run, each in its own process group."""

    def __init__(self, root: Path, servers: localstack.Stack, lease_s: float, workers: int, threads: int) -> None:
        self.root, self.servers, self.lease_s = root, servers, lease_s
        self.api_url = f"http://127.0.0.1:{localstack.free_port()}"
        self.stripe_url = f"http://127.0.0.1:{localstack.free_port()}"
        self.carrier_url = f"http://127.0.0.1:{localstack.free_port()}"
        logs = root / "logs"
        logs.mkdir(exist_ok=True)
        env = self._env()
        api_port, stripe_port = self.api_url.rsplit(":", 1)[1], self.stripe_url.rsplit(":", 1)[1]
        self.stripe = Child("stripe", python("-m", "scripts.fake_stripe", "--port", stripe_port), env, logs)
        carrier_port = self.carrier_url.rsplit(":", 1)[1]
        self.carrier = Child("carrier", python("-m", "scripts.fake_carrier", "--port", carrier_port), env, logs)
        web = ["api.app:create_app", "--factory", "--port", api_port, "--log-level", "warning"]
        self.api = Child("api", venv_tool("uvicorn", *web), env, logs)
        self.reaper = Child("reaper", python("-m", "workers.reaper"), env, logs)
        dramatiq = venv_tool("dramatiq", "workers.saga.worker", "--processes", "1", "--threads", str(threads))
        # As in the Procfile: the saga's workers, and one of the shops' webhooks; the chaos kills either kind.
        saga_workers = [Child(f"worker-{n}", [*dramatiq, "--queues", *SAGA_QUEUES], env, logs) for n in range(workers)]
        webhooks = Child("webhooks", [*dramatiq, "--queues", WEBHOOK_QUEUE], env, logs)
        self.workers = [*saga_workers, webhooks]

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "dramatiq_prom_db")}
        return env | {
            "DATABASE_URL": self.servers.database_url,
            "REDIS_URL": self.servers.redis_url,
            "STACK_DIR": str(self.root),
            "STRIPE_API_BASE": self.stripe_url,
            "STRIPE_API_KEY": LOCAL_STRIPE_KEY,
            "STRIPE_TIMEOUT_S": "2",
            "STEP_LEASE_S": str(self.lease_s),
            "REAPER_INTERVAL_S": "1",
            "REAPER_METRICS_PORT": str(localstack.free_port()),
            "API_METRICS_PORT": str(localstack.free_port()),
            "RATE_LIMIT_PER_S": "100000",
            "RATE_LIMIT_BURST": "100000",
            "LOG_FORMAT": "json",
            # A flaky provider on top of the crashes: errors, rate limits, and answers lost in a timeout.
            "FAKE_STRIPE_ERROR_RATE": "0.02",
            "FAKE_STRIPE_RATE_LIMIT_RATE": "0.01",
            "FAKE_STRIPE_TIMEOUT_RATE": "0.01",
            "FAKE_STRIPE_TIMEOUT_DELAY_S": "3",
            # ... and a provider that behaves as documented: search that lags, charges that process for a while
            # (some fail, some want 3-D Secure), refunds that stay pending (some fail), webhooks that come late.
            "FAKE_STRIPE_SEARCH_LAG_S": "60",
            "FAKE_STRIPE_PROCESSING_RATE": "0.05",
            "FAKE_STRIPE_PROCESSING_DELAY_S": "2",
            "FAKE_STRIPE_PROCESSING_FAILURE_RATE": "0.2",
            "FAKE_STRIPE_REQUIRES_ACTION_RATE": "0.01",
            "FAKE_STRIPE_REFUND_PENDING_RATE": "0.2",
            "FAKE_STRIPE_REFUND_SETTLE_S": "2",
            "FAKE_STRIPE_REFUND_FAILURE_RATE": "0.1",
            "FAKE_STRIPE_WEBHOOK_URL": f"{self.api_url}/v1/webhooks/stripe",
            "FAKE_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "FAKE_STRIPE_WEBHOOK_DELAY_S": "2",
            "FAKE_STRIPE_WEBHOOK_MAX_ATTEMPTS": "14",
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            # The carrier: 500s, shipments accepted whose answer is lost, parcels picked up 4 s after creation.
            "CARRIER_API_BASE": self.carrier_url,
            "CARRIER_API_KEY": LOCAL_CARRIER_KEY,
            "CARRIER_TIMEOUT_S": "2",
            "FAKE_CARRIER_ERROR_RATE": "0.02",
            "FAKE_CARRIER_LOST_ANSWER_RATE": "0.03",
            "FAKE_CARRIER_TIMEOUT_DELAY_S": "3",
            "FAKE_CARRIER_PICKUP_DELAY_S": "4",
            # The shop's webhook endpoint runs in the harness, on the loopback; retries and re-drives come fast.
            "WEBHOOK_ALLOW_HTTP": "true",
            "WEBHOOK_ALLOWED_HOSTS": '["127.0.0.1"]',
            "WEBHOOK_TIMEOUT_S": "2",
            "WEBHOOK_BACKOFF_BASE_S": "0.5",
            "WEBHOOK_BACKOFF_CAP_S": "5",
            "WEBHOOK_REDRIVE_AFTER_S": "5",
        }

    def start(self) -> None:
        for child in (self.stripe, self.carrier, self.api, self.reaper, *self.workers):
            child.start()
        wait_until_answers(f"{self.api_url}/readyz", self.api.process, 60, "the API did not become ready")
        stripe_up = f"{self.stripe_url}/_control/faults"
        wait_until_answers(stripe_up, self.stripe.process, 30, "the Stripe server did not start")

    def stop(self) -> None:
        for child in (*self.workers, self.reaper, self.api, self.stripe, self.carrier):
            child.stop()
