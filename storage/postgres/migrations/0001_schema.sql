-- Anvil's state, version 1.
--
-- Times are timestamptz (microseconds, UTC on the wire). A time that may be
-- unset is NULL when unset; one that is only compared (leases, next attempts)
-- keeps the zero time, 0001-01-01, which sorts before every real time. Lists
-- are arrays or jsonb, NULL when empty. Keys and serials use the "C"
-- collation: byte order, the same as SQLite's, whatever the database locale.

CREATE TABLE nonces (
	nonce   text COLLATE "C" PRIMARY KEY,
	expires timestamptz NOT NULL
);
CREATE INDEX nonces_expires ON nonces (expires);

CREATE TABLE accounts (
	id           text COLLATE "C" PRIMARY KEY,
	key_id       text COLLATE "C" NOT NULL UNIQUE,
	key          bytea,
	contact      text[],
	status       text NOT NULL,
	terms_agreed boolean NOT NULL,
	eab_key_id   text NOT NULL,
	created_ip   text NOT NULL,
	created_at   timestamptz NOT NULL
);
-- Per-IP rate limit on new accounts.
CREATE INDEX accounts_ip ON accounts (created_ip, created_at);

CREATE TABLE orders (
	id          text COLLATE "C" PRIMARY KEY,
	account_id  text COLLATE "C" NOT NULL REFERENCES accounts (id),
	status      text NOT NULL,
	identifiers jsonb,
	-- The order's authorizations in order, for GetOrder; order_authzs holds
	-- the same references for integrity and cleanup. Never updated.
	authz_ids   text[],
	profile     text NOT NULL,
	not_before  timestamptz,
	not_after   timestamptz,
	expires     timestamptz NOT NULL,
	error       bytea,
	csr         bytea,
	cert_serial text COLLATE "C" NOT NULL,
	replaces    text NOT NULL,
	lease_until timestamptz NOT NULL,
	created_at  timestamptz NOT NULL,
	updated_at  timestamptz NOT NULL
);
-- Order lists (newest first) and the per-account rate limit.
CREATE INDEX orders_account ON orders (account_id, created_at DESC, id DESC);
-- Finalizes whose node died.
CREATE INDEX orders_stuck ON orders (lease_until) WHERE status = 'processing';
CREATE INDEX orders_expires ON orders (expires, id);

CREATE TABLE authorizations (
	id          text COLLATE "C" PRIMARY KEY,
	account_id  text COLLATE "C" NOT NULL REFERENCES accounts (id),
	ident_type  text NOT NULL,
	ident_value text NOT NULL,
	wildcard    boolean NOT NULL,
	status      text NOT NULL,
	expires     timestamptz NOT NULL,
	created_at  timestamptz NOT NULL,
	updated_at  timestamptz NOT NULL
);
-- Reuse of valid authorizations.
CREATE INDEX authorizations_reuse ON authorizations (account_id, ident_value, ident_type, wildcard, expires)
	WHERE status = 'valid';
-- The failed-validation rate limit.
CREATE INDEX authorizations_failed ON authorizations (ident_value, ident_type, updated_at)
	WHERE status = 'invalid';
CREATE INDEX authorizations_expires ON authorizations (expires, id);

CREATE TABLE challenges (
	id           text COLLATE "C" PRIMARY KEY,
	authz_id     text COLLATE "C" NOT NULL REFERENCES authorizations (id) ON DELETE CASCADE,
	position     integer NOT NULL,
	type         text NOT NULL,
	token        text NOT NULL,
	status       text NOT NULL,
	validated    timestamptz,
	error        bytea,
	attempts     integer NOT NULL,
	next_attempt timestamptz NOT NULL,
	lease_until  timestamptz NOT NULL,
	updated_at   timestamptz NOT NULL,
	UNIQUE (authz_id, position)
);
-- Validations due.
CREATE INDEX challenges_due ON challenges (next_attempt) WHERE status = 'processing';

-- Which order refers to which authorization: an order may reuse another's.
-- The foreign keys make CreateOrder refuse an unknown authorization and
-- DeleteExpired keep one that a kept order still shows.
CREATE TABLE order_authzs (
	order_id text COLLATE "C" NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
	authz_id text COLLATE "C" NOT NULL REFERENCES authorizations (id),
	PRIMARY KEY (order_id, authz_id)
);
CREATE INDEX order_authzs_authz ON order_authzs (authz_id);

-- The issuance ledger. No foreign key to orders: the ledger outlives them.
CREATE TABLE certificates (
	serial     text COLLATE "C" PRIMARY KEY,
	issuer     text NOT NULL,
	profile    text NOT NULL,
	order_id   text COLLATE "C" NOT NULL,
	lint_der   bytea,
	der        bytea,
	created_at timestamptz NOT NULL,
	expires    timestamptz NOT NULL,
	revoked_at timestamptz,
	reason     integer NOT NULL DEFAULT 0
);
CREATE INDEX certificates_order ON certificates (order_id, created_at);
-- CRLs.
CREATE INDEX certificates_revoked ON certificates (issuer, serial) WHERE revoked_at IS NOT NULL;

CREATE TABLE eab_keys (
	id               text COLLATE "C" PRIMARY KEY,
	key              bytea NOT NULL,
	algorithm        text NOT NULL,
	comment          text NOT NULL,
	allowed_suffixes text[],
	-- '' until bound; no foreign key, because acme binds the key before it
	-- creates the account.
	account_id       text NOT NULL DEFAULT '',
	revoked          boolean NOT NULL DEFAULT false,
	created_at       timestamptz NOT NULL
);

CREATE TABLE leases (
	name       text COLLATE "C" PRIMARY KEY,
	holder     text NOT NULL,
	held_until timestamptz NOT NULL
);
