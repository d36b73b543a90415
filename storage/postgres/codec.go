package postgres

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/anvil-pki/anvil/storage/internal/records"
)

// Conversions between Go values and the column types of the schema. pgx
// encodes time.Time, []byte and []string itself; these helpers add the
// schema's conventions (NULL for unset or empty) and undo pgx's habit of
// returning times in the local zone.

// ts encodes a time as records.Time keeps it.
func ts(t time.Time) time.Time { return records.Time(t) }

// optTS encodes a time that may be unset: NULL for the zero time.
func optTS(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return records.Time(t)
}

// fromTS decodes a timestamptz into UTC.
func fromTS(t time.Time) time.Time { return t.UTC() }

// fromOptTS decodes a nullable timestamptz.
func fromOptTS(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// bytea encodes bytes: NULL when empty.
func bytea(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// textArray encodes a list of strings: NULL when empty.
func textArray(list []string) any {
	if len(list) == 0 {
		return nil
	}
	return list
}

// jsonb encodes a list as a JSON array: NULL when empty.
func jsonb[T any](list []T) (any, error) {
	if len(list) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(list)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

// fromJSONB decodes jsonb.
func fromJSONB[T any](raw []byte, what string) ([]T, error) {
	if raw == nil {
		return nil, nil
	}
	var list []T
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("decode %s: %w", what, err)
	}
	return records.NilIfEmpty(list), nil
}
