"""A Stripe-compatible loopback server for local runs and tests: test cards, idempotency, faults, webhooks.

Concurrent requests that share an Idempotency-Key are serialized (one lock guards all state), so the second
one replays the first one's saved answer rather than getting a 409. Injected 500s and 429s are answered before
the endpoint runs, so nothing is applied or saved for them; an injected timeout applies the request and saves
its answer, then withholds the response until the client disconnects (or `timeout_delay_s` passes).

Behaviours as Stripe documents them, each off by default (knobs in `Faults`, set via /_control/faults or
FAKE_STRIPE_<NAME>):
- Search is eventually consistent: with `search_lag_s` it sees each PaymentIntent as it was that long ago;
  retrieve by id is always current.
- Confirming with a succeeding card may answer `processing` (`processing_rate`), settling after
  `processing_delay_s` to succeeded or, at `processing_failure_rate`, back to requires_payment_method; or
  `requires_action` (`requires_action_rate`, and always for pm_card_authenticationRequired), which never settles
  by itself and with `error_on_requires_action=true` is a 402 `authentication_required` instead.
- PaymentIntents cancel from requires_payment_method, requires_confirmation, requires_action, requires_capture.
- Refunds may start `pending` (`refund_pending_rate`), settling after `refund_settle_s` to succeeded or, at
  `refund_failure_rate`, to failed (the money goes back on the charge). A pending refund counts in the charge's
  amount_refunded; the /_control/ledger's amount_refunded counts succeeded refunds only.
- GET /v1/charges/{id} (metadata copied from the intent), and `expand[]=latest_charge` on intents.
- Dashboard actions under /_control: refunds, disputes (won or lost; a lost one withdraws its amount; a disputed
  charge cannot be refunded), settling a processing intent or a pending refund now.
- Every state change is an Event (GET /_control/events). With a webhook target (POST /_control/webhooks or
  FAKE_STRIPE_WEBHOOK_URL/SECRET) each is POSTed, signed as `stripe listen` does, from a background thread: late
  by up to `webhook_delay_s`, retried with backoff from `webhook_retry_base_s` for `webhook_max_attempts` tries.
- A background ticker settles due objects even if nobody reads them; threads stop with the server.
"""

from __future__ import annotations

from .app import create_app
from .faults import Faults
from .server import FakeStripeServer, serve
from .webhooks import WebhookTarget

__all__ = ["FakeStripeServer", "Faults", "WebhookTarget", "create_app", "serve"]
