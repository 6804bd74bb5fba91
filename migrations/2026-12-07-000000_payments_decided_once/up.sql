-- The payment.succeeded taken as the payment that paid an order a payment
-- service marked paid in SQL (which names no payment): the first one that
-- matches the order. Every other payment for that order is a second one.
ALTER TABLE orders ADD COLUMN adopted_payment_id text;

-- How many checks the order had had when a payment's outcome was decided:
-- every copy of the payment's event says the same.
ALTER TABLE payments ADD COLUMN decided_attempts integer CHECK (decided_attempts >= 0);

-- Payments whose own event is owed (a refund or a mismatch to look into),
-- for the sweeper.
CREATE INDEX payments_event_owed ON payments (received_at)
    WHERE event_published_at IS NULL AND outcome IN ('mismatch', 'twice', 'after_close');
