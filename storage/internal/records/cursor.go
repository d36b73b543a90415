package records

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/anvil-pki/anvil/storage"
)

// A ListOrderIDs cursor names the last order of a page by its sort key,
// (CreatedAt, ID), rather than by an offset: orders created while a client
// pages cannot shift later pages, so no ID is skipped or repeated. It is
// base64url so that it can travel in a URL unescaped, and opaque so that
// clients do not build their own.

// EncodeCursor returns the cursor that continues after the order with
// createdAt and id.
func EncodeCursor(createdAt time.Time, id string) string {
	raw := strconv.FormatInt(Time(createdAt).UnixMicro(), 10) + "." + id
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// DecodeCursor reverses EncodeCursor. A cursor that EncodeCursor did not make
// names no page: the error wraps storage.ErrNotFound.
func DecodeCursor(cursor string) (createdAt time.Time, id string, err error) {
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return time.Time{}, "", fmt.Errorf("order list cursor %q: %w", cursor, storage.ErrNotFound)
	}
	micros, id, ok := strings.Cut(string(raw), ".")
	us, perr := strconv.ParseInt(micros, 10, 64)
	if !ok || perr != nil || id == "" {
		return time.Time{}, "", fmt.Errorf("order list cursor %q: %w", cursor, storage.ErrNotFound)
	}
	return time.UnixMicro(us).UTC(), id, nil
}
