package sqlite

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/anvil-pki/anvil/storage/internal/records"
)

// Conversions between Go values and the column types of the schema. Each
// writer has its reader, and they are the only place the encodings live.

// micros encodes t as microseconds since the epoch. Every time passes
// through records.Time first, so what is stored is what is read back.
func micros(t time.Time) int64 { return records.Time(t).UnixMicro() }

// fromMicros decodes micros.
func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// optMicros encodes a time that may be unset: NULL for the zero time.
func optMicros(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return micros(t)
}

// fromOptMicros decodes optMicros.
func fromOptMicros(us sql.NullInt64) time.Time {
	if !us.Valid {
		return time.Time{}
	}
	return fromMicros(us.Int64)
}

// blob encodes bytes: NULL when empty.
func blob(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// jsonList encodes a list as a JSON array: NULL when empty.
func jsonList[T any](list []T) (any, error) {
	if len(list) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(list)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

// fromJSONList decodes jsonList.
func fromJSONList[T any](s sql.NullString, what string) ([]T, error) {
	if !s.Valid {
		return nil, nil
	}
	var list []T
	if err := json.Unmarshal([]byte(s.String), &list); err != nil {
		return nil, fmt.Errorf("decode %s: %w", what, err)
	}
	return records.NilIfEmpty(list), nil
}
