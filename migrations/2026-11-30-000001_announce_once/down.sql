ALTER TABLE orders DROP COLUMN announce_claimed_at;
