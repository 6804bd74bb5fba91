-- Barriers that passed the payments consumer of another daemon than the one
-- that published them: the publisher takes its own rows away as it learns
-- of them; the sweeper removes what a daemon that died left behind.
CREATE TABLE payment_barriers (
    token text PRIMARY KEY,
    passed_at timestamptz NOT NULL DEFAULT now()
);
