DROP TABLE deadline_changes;
ALTER TABLE orders DROP COLUMN deadline_changed_at;
