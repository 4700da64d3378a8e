"""Shops' webhooks: the delivery (actor and its logic) and the reaper's pass that feeds it from the outbox."""
