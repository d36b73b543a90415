package records

import (
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/anvil-pki/anvil/storage"
)

func TestCursorRoundTrip(t *testing.T) {
	for _, c := range []struct {
		at time.Time
		id string
	}{
		{time.Date(2031, 3, 14, 15, 9, 26, 535897000, time.UTC), "aB3-_x"},
		{time.Time{}, "id.with.dots"},
		{time.Date(1969, 12, 31, 23, 59, 59, 999999000, time.UTC), "ünïcode id"},
	} {
		cur := EncodeCursor(c.at, c.id)
		at, id, err := DecodeCursor(cur)
		if err != nil || !at.Equal(c.at) || at.Location() != time.UTC || id != c.id {
			t.Errorf("%v %q: decoded %v %q %v", c.at, c.id, at, id, err)
		}
	}
}

// TestCursorFromClients: a cursor arrives in a URL; whatever a client puts
// there is ErrNotFound, never a panic.
func TestCursorFromClients(t *testing.T) {
	raw := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, bad := range []string{
		"!!!", "a", raw(""), raw("."), raw("123"), raw("123."), raw(".id"), raw("x.id"),
		raw("99999999999999999999999.id"), raw("1e9.id"), raw(" 1.id"),
	} {
		if _, _, err := DecodeCursor(bad); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("DecodeCursor(%q) = %v, want ErrNotFound", bad, err)
		}
	}
}

func TestStamp(t *testing.T) {
	if Stamp(time.Time{}).IsZero() {
		t.Error("Stamp of the zero time is zero")
	}
	in := time.Date(2031, 1, 1, 0, 0, 0, 1999, time.FixedZone("X", 3600))
	if got := Stamp(in); got != time.Date(2030, 12, 31, 23, 0, 0, 1000, time.UTC) {
		t.Errorf("Stamp(%v) = %v", in, got)
	}
}
