DROP TABLE parked_messages;
DROP TRIGGER order_counts_on_delete ON orders;
DROP TRIGGER order_counts_on_update ON orders;
DROP TRIGGER order_counts_on_insert ON orders;
DROP FUNCTION order_counts_add();
DROP TABLE order_counts;
DROP INDEX orders_pending_expires_at;
