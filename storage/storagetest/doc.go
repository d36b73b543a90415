// Package storagetest is the conformance suite of storage.Store: one set of
// behavioural tests that every implementation runs, so that SQLite and
// PostgreSQL cannot drift apart. A test here asserts what a caller of the
// interface can observe, never how a store keeps it.
//
// Besides the interface's own comments, the suite holds both stores to these
// shared conventions:
//   - times come back in UTC, truncated to the microsecond; the zero time
//     comes back zero;
//   - an empty slice or byte field (nil or not) comes back nil;
//   - a record created with an empty ID, or a zero CreatedAt, gets one;
//   - Update* methods write the record's UpdatedAt as given (the store's
//     clock only if it is zero);
//   - GetAuthorizations answers in the order of the IDs asked for, and
//     ErrNotFound if one is missing;
//   - a malformed ListOrderIDs cursor is ErrNotFound;
//   - DeleteExpired counts nonces, orders, authorizations, challenges and
//     ended leases, and keeps an expired authorization that a kept order still refers to.
//
// The package must never reach into an implementation (no SQL, no type
// assertions on the store) nor time anything: concurrency tests count
// outcomes, they do not measure durations.
package storagetest
