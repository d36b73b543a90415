-- Partitioned CRLs (RFC 5280 5.2.5). Each certificate is in one CRL shard of
-- its issuer, chosen when its serial is reserved and never changed, because
-- the shard's URL is in the certificate. Rows from before are in shard 0,
-- whose URL is the issuer's crl_url, the one they carry.
ALTER TABLE certificates ADD COLUMN crl_shard INTEGER NOT NULL DEFAULT 0;
-- The revoked list of one shard, read from the index alone: it holds every
-- column a CRL entry needs, so a CRL of 100k entries does not read 100k wide
-- rows (with their DER). It also serves the per-issuer count and latest
-- revocation, so the narrower index of 0001 goes.
CREATE INDEX certificates_revoked_shard ON certificates (issuer, crl_shard, serial, revoked_at, reason, expires)
	WHERE revoked_at IS NOT NULL;
DROP INDEX certificates_revoked;
-- One CRL per issuer and shard. SQLite cannot change a primary key in place;
-- the table holds a row per shard, so copying it is cheap.
CREATE TABLE crls_sharded (
	issuer      TEXT NOT NULL,
	shard       INTEGER NOT NULL DEFAULT 0,
	number      INTEGER NOT NULL,
	this_update INTEGER NOT NULL,
	next_update INTEGER NOT NULL,
	der         BLOB NOT NULL,
	PRIMARY KEY (issuer, shard)
);
INSERT INTO crls_sharded (issuer, shard, number, this_update, next_update, der)
	SELECT issuer, 0, number, this_update, next_update, der FROM crls;
DROP TABLE crls;
ALTER TABLE crls_sharded RENAME TO crls;
