DROP TABLE parked_messages;
DROP TRIGGER order_counts_on_delete ON orders;
DROP TRIGGER order_counts_on_update ON orders;
DROP TRIGGER order_counts_on_insert ON orders;
DROP FUNCTION order_counts_add();
DROP TABLE order_counts;
CREATE INDEX orders_unsettled_next_check_at ON orders (next_check_at)
    WHERE event_published_at IS NULL;
DROP INDEX orders_unsettled_next_check_at_status;
