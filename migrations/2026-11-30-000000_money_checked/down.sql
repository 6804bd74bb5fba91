DROP TABLE cancellations;
ALTER TABLE payments ADD COLUMN after_close boolean NOT NULL DEFAULT false;
UPDATE payments SET after_close = true WHERE outcome = 'after_close';
ALTER TABLE payments DROP COLUMN outcome;
ALTER TABLE payments DROP COLUMN currency;
ALTER TABLE orders DROP COLUMN gateway_asks;
ALTER TABLE orders DROP CONSTRAINT orders_closed_with_a_reason;
ALTER TABLE orders DROP COLUMN close_reason;
