-- Who announces an order's terminal event: the handler whose write moved
-- the order, or the first to claim it after. A claim older than a while is
-- taken to be abandoned (its holder died; its message will come back).
ALTER TABLE orders ADD COLUMN announce_claimed_at timestamptz;
