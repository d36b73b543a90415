package postgres

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/anvil-pki/anvil/storage"
	"github.com/anvil-pki/anvil/storage/internal/records"
)

// SQLSTATE codes with a storage meaning.
const (
	uniqueViolation     = "23505"
	foreignKeyViolation = "23503"
	// divisionByZero is how RecordValidation's one statement undoes itself.
	divisionByZero = "22012"
)

// mapErr gives err, from an operation described by what, its storage meaning:
// a unique violation is storage.ErrConflict (the record exists), a foreign key
// violation storage.ErrNotFound (the record it refers to does not). Anything
// else is wrapped as it is.
func mapErr(err error, what string) error {
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case uniqueViolation:
			return fmt.Errorf("%s: %w (%s)", what, storage.ErrConflict, pe.ConstraintName)
		case foreignKeyViolation:
			return fmt.Errorf("%s refers to a record that does not exist: %w (%s)", what, storage.ErrNotFound, pe.ConstraintName)
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// notFound turns pgx.ErrNoRows into storage.ErrNotFound naming the record.
func notFound(err error, what, key string) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return records.NotFound(what, key)
	}
	return fmt.Errorf("read %s %q: %w", what, key, err)
}
