package sqlite

import (
	"errors"
	"fmt"

	"github.com/mattn/go-sqlite3"

	"github.com/anvil-pki/anvil/storage"
)

// mapErr gives err, from an operation described by what, its storage meaning:
// a unique or primary key violation is storage.ErrConflict (the record
// exists), a foreign key violation storage.ErrNotFound (the record it refers
// to does not). Anything else is wrapped as it is.
func mapErr(err error, what string) error {
	if err == nil {
		return nil
	}
	var se sqlite3.Error
	if errors.As(err, &se) {
		switch se.ExtendedCode {
		case sqlite3.ErrConstraintUnique, sqlite3.ErrConstraintPrimaryKey:
			return fmt.Errorf("%s: %w (%v)", what, storage.ErrConflict, err)
		case sqlite3.ErrConstraintForeignKey:
			return fmt.Errorf("%s refers to a record that does not exist: %w (%v)", what, storage.ErrNotFound, err)
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}
