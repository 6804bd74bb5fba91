-- When the deadline change an order holds was received: a change received
-- before it is superseded (changes apply in the order they were delivered).
ALTER TABLE orders ADD COLUMN deadline_changed_at timestamptz;

-- Every deadline change: kept for an order not seen yet (applied_at NULL)
-- until it arrives, and once applied, as it was, so that every copy of its
-- order.deadline_changed event is the same.
CREATE TABLE deadline_changes (
    order_id           text        NOT NULL,
    expires_at         timestamptz NOT NULL,
    received_at        timestamptz NOT NULL,
    applied_at         timestamptz,
    attempts           integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    event_published_at timestamptz,
    PRIMARY KEY (order_id, expires_at)
);

-- Changes waiting for their order, looked up when it arrives.
CREATE INDEX deadline_changes_waiting ON deadline_changes (order_id)
    WHERE applied_at IS NULL;
