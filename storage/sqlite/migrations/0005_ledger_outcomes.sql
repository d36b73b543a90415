-- Every ledger row ends in exactly one outcome: 'issued', 'not_signed' (with
-- the reason: 'hsm_error', 'bad_signature', 'no_intent') or 'abandoned' (the
-- process ended between intent and outcome; the serial is then revoked with
-- cessationOfOperation, since a signature may exist). '' while open. holder
-- names the node that wrote the intent, so that a sweep can tell a dead
-- node's intents from a live one's.
ALTER TABLE certificates ADD COLUMN holder TEXT NOT NULL DEFAULT '';
ALTER TABLE certificates ADD COLUMN outcome TEXT NOT NULL DEFAULT '';
ALTER TABLE certificates ADD COLUMN outcome_reason TEXT NOT NULL DEFAULT '';
UPDATE certificates SET outcome = 'issued' WHERE der IS NOT NULL;
UPDATE certificates SET outcome = 'not_signed', outcome_reason = 'no_intent' WHERE der IS NULL AND lint_der IS NULL;
-- Intents left open by earlier versions stay open: the next start (SQLite)
-- or sweep (PostgreSQL) abandons them.
CREATE INDEX certificates_open ON certificates (holder, created_at) WHERE outcome = '';
-- Counts per issuer and outcome (admin ledger check, metrics) from the index.
CREATE INDEX certificates_outcome ON certificates (issuer, outcome, outcome_reason);
