-- Why a closed order was closed: its deadline passed unpaid, the customer
-- cancelled it, or the payment gateway could not confirm either way.
ALTER TABLE orders ADD COLUMN close_reason text
    CHECK (close_reason IN ('expired', 'cancelled', 'unverified'));
UPDATE orders SET close_reason = 'expired' WHERE status = 'closed';
ALTER TABLE orders ADD CONSTRAINT orders_closed_with_a_reason
    CHECK ((status = 'closed') = (close_reason IS NOT NULL));

-- How many times the payment gateway was asked about the order.
ALTER TABLE orders ADD COLUMN gateway_asks integer NOT NULL DEFAULT 0
    CHECK (gateway_asks >= 0);

-- What each payment did, decided once and kept: it settled its order, did
-- not match it, paid an order already paid, or came after the close. NULL
-- while its order is not known yet.
ALTER TABLE payments ADD COLUMN currency text;
ALTER TABLE payments ADD COLUMN outcome text
    CHECK (outcome IN ('settled', 'mismatch', 'twice', 'after_close'));
UPDATE payments SET outcome = 'after_close' WHERE after_close;
UPDATE payments p SET outcome = 'settled'
    FROM orders o WHERE o.payment_id = p.payment_id AND p.outcome IS NULL;
ALTER TABLE payments DROP COLUMN after_close;

-- Cancellations of orders paywait has not seen yet, applied when they arrive.
CREATE TABLE cancellations (
    order_id    text        PRIMARY KEY,
    reason      text,
    received_at timestamptz NOT NULL DEFAULT now()
);
