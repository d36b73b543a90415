// Package records holds what the SQLite and PostgreSQL stores share so that
// they behave alike before a row is written or after it is read: identifiers
// and timestamps filled in when a caller leaves them empty, times reduced to
// what a database keeps (UTC, microseconds), empty slices made nil, and the
// opaque cursor of ListOrderIDs.
//
// It must never touch a database or decide a record's fate: no SQL, no status
// rules. Those belong to the stores and to acme.
package records
