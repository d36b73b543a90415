package records

import "time"

// Time returns t as both databases keep it: UTC, truncated to the microsecond,
// without a monotonic clock reading. The zero time stays the zero time, so
// "unset" round-trips as unset.
func Time(t time.Time) time.Time {
	return t.UTC().Truncate(time.Microsecond)
}

// Now is the store's clock, used only for a timestamp the caller left zero.
// Every other time comes from the caller, whose clock acme controls (tests
// included), so that one clock orders all of a record's times.
func Now() time.Time { return Time(time.Now()) }

// Stamp returns Time(t), or Now if t is zero: the UpdatedAt an Update* method
// writes.
func Stamp(t time.Time) time.Time {
	if t.IsZero() {
		return Now()
	}
	return Time(t)
}

// normalizeTimes rewrites each time in place with Time.
func normalizeTimes(ts ...*time.Time) {
	for _, t := range ts {
		*t = Time(*t)
	}
}
