-- Partitioned CRLs (RFC 5280 5.2.5). Each certificate is in one CRL shard of
-- its issuer, chosen when its serial is reserved and never changed, because
-- the shard's URL is in the certificate. Rows from before are in shard 0,
-- whose URL is the issuer's crl_url, the one they carry. A constant default
-- is stored in the catalog (PostgreSQL 11 and later): adding the column does
-- not rewrite the table.
ALTER TABLE certificates ADD COLUMN crl_shard integer NOT NULL DEFAULT 0;
-- The revoked list of one shard, read by an index-only scan: the index holds
-- every column a CRL entry needs. Partial, so it is as small as the revoked
-- set. Building it reads the table once under a SHARE lock (writes wait, reads
-- go on): on 1M rows that is seconds. It also serves the per-issuer count and
-- latest revocation, so the narrower index of 0001 goes.
CREATE INDEX certificates_revoked_shard ON certificates (issuer, crl_shard, serial)
	INCLUDE (revoked_at, reason, expires) WHERE revoked_at IS NOT NULL;
DROP INDEX certificates_revoked;
-- One CRL per issuer and shard.
ALTER TABLE crls ADD COLUMN shard integer NOT NULL DEFAULT 0;
ALTER TABLE crls DROP CONSTRAINT crls_pkey;
ALTER TABLE crls ADD PRIMARY KEY (issuer, shard);
