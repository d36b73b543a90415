-- Leases past their time are deleted by DeleteExpired: the signer takes one
-- per order it issues for.
CREATE INDEX leases_held_until ON leases (held_until);
