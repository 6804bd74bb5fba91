-- Each reminder, once it is first due: one per order, deadline and offset
-- (its order.expiring has that id), with the order's checks then, so that
-- every copy of its event is the same.
CREATE TABLE reminders (
    order_id          text        NOT NULL,
    expires_at        timestamptz NOT NULL,
    remind_before_ms  bigint      NOT NULL CHECK (remind_before_ms > 0),
    attempts          integer     NOT NULL CHECK (attempts >= 0),
    due_at            timestamptz NOT NULL,
    published_at      timestamptz,
    PRIMARY KEY (order_id, expires_at, remind_before_ms)
);
