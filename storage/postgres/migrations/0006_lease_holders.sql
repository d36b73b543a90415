-- Leases on orders and challenges name their holder (a node identity), so
-- that a node restarting under the same identity can take its own work back
-- at once instead of waiting for its old leases to run out.
ALTER TABLE orders ADD COLUMN lease_holder text NOT NULL DEFAULT '';
ALTER TABLE challenges ADD COLUMN lease_holder text NOT NULL DEFAULT '';
