-- Anvil's state, version 1.
--
-- Times are INTEGER microseconds since the Unix epoch, UTC: exact, compact,
-- and compared as integers. A time that may be unset is NULL when unset; one
-- that is only compared (leases, next attempts) keeps the zero time's value,
-- which sorts before every real time. Lists are JSON arrays, NULL when empty.
-- Tables keyed by text carry their rowid unless rows are small and looked up
-- by key alone (WITHOUT ROWID).

CREATE TABLE nonces (
	nonce   TEXT PRIMARY KEY,
	expires INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX nonces_expires ON nonces (expires);

CREATE TABLE accounts (
	id           TEXT PRIMARY KEY,
	key_id       TEXT NOT NULL UNIQUE,
	key          BLOB,
	contact      TEXT,
	status       TEXT NOT NULL,
	terms_agreed INTEGER NOT NULL,
	eab_key_id   TEXT NOT NULL,
	created_ip   TEXT NOT NULL,
	created_at   INTEGER NOT NULL
);
-- Per-IP rate limit on new accounts.
CREATE INDEX accounts_ip ON accounts (created_ip, created_at);

CREATE TABLE orders (
	id          TEXT PRIMARY KEY,
	account_id  TEXT NOT NULL REFERENCES accounts (id),
	status      TEXT NOT NULL,
	identifiers TEXT,
	-- The order's authorizations in order, for GetOrder; order_authzs holds
	-- the same references for integrity and cleanup. Never updated.
	authz_ids   TEXT,
	profile     TEXT NOT NULL,
	not_before  INTEGER,
	not_after   INTEGER,
	expires     INTEGER NOT NULL,
	error       BLOB,
	csr         BLOB,
	cert_serial TEXT NOT NULL,
	replaces    TEXT NOT NULL,
	lease_until INTEGER NOT NULL,
	created_at  INTEGER NOT NULL,
	updated_at  INTEGER NOT NULL
);
-- Order lists (newest first) and the per-account rate limit.
CREATE INDEX orders_account ON orders (account_id, created_at, id);
-- Finalizes whose node died.
CREATE INDEX orders_stuck ON orders (lease_until) WHERE status = 'processing';
CREATE INDEX orders_expires ON orders (expires, id);

CREATE TABLE authorizations (
	id          TEXT PRIMARY KEY,
	account_id  TEXT NOT NULL REFERENCES accounts (id),
	ident_type  TEXT NOT NULL,
	ident_value TEXT NOT NULL,
	wildcard    INTEGER NOT NULL,
	status      TEXT NOT NULL,
	expires     INTEGER NOT NULL,
	created_at  INTEGER NOT NULL,
	updated_at  INTEGER NOT NULL
);
-- Reuse of valid authorizations.
CREATE INDEX authorizations_reuse ON authorizations (account_id, ident_value, ident_type, wildcard, expires)
	WHERE status = 'valid';
-- The failed-validation rate limit.
CREATE INDEX authorizations_failed ON authorizations (ident_value, ident_type, updated_at)
	WHERE status = 'invalid';
CREATE INDEX authorizations_expires ON authorizations (expires, id);

CREATE TABLE challenges (
	id           TEXT PRIMARY KEY,
	authz_id     TEXT NOT NULL REFERENCES authorizations (id) ON DELETE CASCADE,
	position     INTEGER NOT NULL,
	type         TEXT NOT NULL,
	token        TEXT NOT NULL,
	status       TEXT NOT NULL,
	validated    INTEGER,
	error        BLOB,
	attempts     INTEGER NOT NULL,
	next_attempt INTEGER NOT NULL,
	lease_until  INTEGER NOT NULL,
	updated_at   INTEGER NOT NULL,
	UNIQUE (authz_id, position)
);
-- Validations due.
CREATE INDEX challenges_due ON challenges (next_attempt) WHERE status = 'processing';

-- Which order refers to which authorization: an order may reuse another's.
-- The foreign keys make CreateOrder refuse an unknown authorization and
-- DeleteExpired keep one that a kept order still shows.
CREATE TABLE order_authzs (
	order_id TEXT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
	authz_id TEXT NOT NULL REFERENCES authorizations (id),
	PRIMARY KEY (order_id, authz_id)
) WITHOUT ROWID;
CREATE INDEX order_authzs_authz ON order_authzs (authz_id);

-- The issuance ledger. No foreign key to orders: the ledger outlives them.
CREATE TABLE certificates (
	serial     TEXT PRIMARY KEY,
	issuer     TEXT NOT NULL,
	profile    TEXT NOT NULL,
	order_id   TEXT NOT NULL,
	lint_der   BLOB,
	der        BLOB,
	created_at INTEGER NOT NULL,
	expires    INTEGER NOT NULL,
	revoked_at INTEGER,
	reason     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX certificates_order ON certificates (order_id, created_at);
-- CRLs.
CREATE INDEX certificates_revoked ON certificates (issuer, serial) WHERE revoked_at IS NOT NULL;

CREATE TABLE eab_keys (
	id               TEXT PRIMARY KEY,
	key              BLOB NOT NULL,
	algorithm        TEXT NOT NULL,
	comment          TEXT NOT NULL,
	allowed_suffixes TEXT,
	-- '' until bound; no foreign key, because acme binds the key before it
	-- creates the account.
	account_id       TEXT NOT NULL DEFAULT '',
	revoked          INTEGER NOT NULL DEFAULT 0,
	created_at       INTEGER NOT NULL
);

CREATE TABLE leases (
	name       TEXT PRIMARY KEY,
	holder     TEXT NOT NULL,
	held_until INTEGER NOT NULL
) WITHOUT ROWID;
