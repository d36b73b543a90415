package records

import (
	"fmt"

	"github.com/anvil-pki/anvil/storage"
)

// NotFound says which record is missing, wrapping storage.ErrNotFound.
func NotFound(what, id string) error {
	return fmt.Errorf("%s %q: %w", what, id, storage.ErrNotFound)
}

// Conflict says which change lost, wrapping storage.ErrConflict.
func Conflict(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), storage.ErrConflict)
}
