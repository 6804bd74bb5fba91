-- What `paywait status` and the status page show, each read without a scan
-- of the orders table.

-- Pending orders by deadline: the page's "due in the next minute / hour".
CREATE INDEX orders_pending_expires_at ON orders (expires_at) WHERE status = 'pending';

-- How many orders are in each status (closed ones by reason), and whether
-- their event was confirmed, kept by the triggers below. Each database
-- session adds to a row of its own (`shard`), so writers never wait for one
-- another here; a count is the sum over the shards.
CREATE TABLE order_counts (
    status       text    NOT NULL,
    -- '' but for closed orders.
    close_reason text    NOT NULL,
    announced    boolean NOT NULL,
    shard        int     NOT NULL,
    orders       bigint  NOT NULL,
    PRIMARY KEY (status, close_reason, announced, shard)
);

INSERT INTO order_counts (status, close_reason, announced, shard, orders)
    SELECT status, coalesce(close_reason, ''), event_published_at IS NOT NULL, 0, count(*)
    FROM orders GROUP BY 1, 2, 3;

CREATE FUNCTION order_counts_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO order_counts AS c (status, close_reason, announced, shard, orders)
            SELECT status, coalesce(close_reason, ''), event_published_at IS NOT NULL,
                   pg_backend_pid() % 64, count(*)
            FROM new_orders GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
            ON CONFLICT (status, close_reason, announced, shard)
            DO UPDATE SET orders = c.orders + EXCLUDED.orders;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO order_counts AS c (status, close_reason, announced, shard, orders)
            SELECT status, reason, announced, pg_backend_pid() % 64, sum(delta)
            FROM (SELECT status, coalesce(close_reason, '') AS reason,
                         event_published_at IS NOT NULL AS announced, 1 AS delta
                  FROM new_orders
                  UNION ALL
                  SELECT status, coalesce(close_reason, ''), event_published_at IS NOT NULL, -1
                  FROM old_orders) AS moved
            GROUP BY 1, 2, 3 HAVING sum(delta) <> 0 ORDER BY 1, 2, 3
            ON CONFLICT (status, close_reason, announced, shard)
            DO UPDATE SET orders = c.orders + EXCLUDED.orders;
    ELSE
        INSERT INTO order_counts AS c (status, close_reason, announced, shard, orders)
            SELECT status, coalesce(close_reason, ''), event_published_at IS NOT NULL,
                   pg_backend_pid() % 64, -count(*)
            FROM old_orders GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
            ON CONFLICT (status, close_reason, announced, shard)
            DO UPDATE SET orders = c.orders + EXCLUDED.orders;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER order_counts_on_insert AFTER INSERT ON orders
    REFERENCING NEW TABLE AS new_orders
    FOR EACH STATEMENT EXECUTE FUNCTION order_counts_add();
CREATE TRIGGER order_counts_on_update AFTER UPDATE ON orders
    REFERENCING OLD TABLE AS old_orders NEW TABLE AS new_orders
    FOR EACH STATEMENT EXECUTE FUNCTION order_counts_add();
CREATE TRIGGER order_counts_on_delete AFTER DELETE ON orders
    REFERENCING OLD TABLE AS old_orders
    FOR EACH STATEMENT EXECUTE FUNCTION order_counts_add();

-- Every message parked in the dead queue, until `paywait replay` moves it
-- back: what `paywait status` and the status page show by reason. The
-- message carries its parked_id in the header x-paywait-parked-id.
CREATE TABLE parked_messages (
    parked_id    text        PRIMARY KEY,
    parked_at    timestamptz NOT NULL DEFAULT now(),
    reason       text        NOT NULL,
    source_queue text        NOT NULL,
    error        text        NOT NULL,
    preview      text        NOT NULL
);

CREATE INDEX parked_messages_by_reason ON parked_messages (reason, parked_at DESC);
