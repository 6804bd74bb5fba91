-- One row per order paywait has seen. The status moves once, from 'pending'
-- to 'paid' or 'closed', by a conditional write (WHERE status = 'pending').
CREATE TABLE orders (
    order_id           text        PRIMARY KEY CHECK (order_id ~ '^[A-Za-z0-9._:-]{1,64}$'),
    status             text        NOT NULL DEFAULT 'pending'
                                   CHECK (status IN ('pending', 'paid', 'closed')),
    amount_cents       bigint      CHECK (amount_cents >= 0),
    currency           text,
    placed_at          timestamptz NOT NULL,
    expires_at         timestamptz NOT NULL CHECK (expires_at > placed_at),
    paid_at            timestamptz,
    closed_at          timestamptz,
    -- The number of checks made so far.
    attempts           integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- The payment message that paid the order (NULL when paid through SQL).
    payment_id         text,
    -- When the broker confirmed the event of the current terminal status;
    -- NULL while downstream has not been told.
    event_published_at timestamptz,
    -- When the next check of the order is due: the sweeper re-arms the timer
    -- of an order whose check is overdue and whose event is still owed.
    next_check_at      timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now()
);

-- The sweeper looks up overdue checks of orders whose event is still owed
-- (pending ones, and those a payment service marked paid in SQL). Settled
-- orders leave this index, so it stays as small as the work in flight.
CREATE INDEX orders_unsettled_next_check_at ON orders (next_check_at)
    WHERE event_published_at IS NULL;

-- Every payment message, including those for orders not seen yet and those
-- that arrived after the order was closed.
CREATE TABLE payments (
    payment_id         text        PRIMARY KEY,
    order_id           text        NOT NULL,
    amount_cents       bigint      CHECK (amount_cents >= 0),
    paid_at            timestamptz,
    received_at        timestamptz NOT NULL DEFAULT now(),
    -- The order was already closed when this payment arrived.
    after_close        boolean     NOT NULL DEFAULT false,
    -- When order.paid_after_close for this payment was confirmed.
    event_published_at timestamptz
);

CREATE INDEX payments_order_id ON payments (order_id, received_at);
