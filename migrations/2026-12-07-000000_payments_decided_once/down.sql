DROP INDEX payments_event_owed;
ALTER TABLE payments DROP COLUMN decided_attempts;
ALTER TABLE orders DROP COLUMN adopted_payment_id;
