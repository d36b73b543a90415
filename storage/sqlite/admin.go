package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/anvil-pki/anvil/storage"
)

var _ storage.Admin = (*Store)(nil)

// filter builds a WHERE clause from the conditions that are set.
type filter struct {
	conds []string
	args  []any
}

func (f *filter) add(cond string, args ...any) {
	f.conds = append(f.conds, cond)
	f.args = append(f.args, args...)
}

func (f *filter) where() string {
	if len(f.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(f.conds, " AND ")
}

func (f *filter) limit(n int) string {
	if n <= 0 {
		return ""
	}
	f.args = append(f.args, n)
	return " LIMIT ?"
}

// orderNamed is the condition that an order (alias o) has an identifier with
// the given value.
const orderNamed = `EXISTS (SELECT 1 FROM json_each(o.identifiers) WHERE json_extract(value, '$.value') = ?)`

// ListCertificates searches the ledger; account and name go through the order.
func (s *Store) ListCertificates(ctx context.Context, cf storage.CertificateFilter) ([]*storage.Certificate, error) {
	var f filter
	if cf.Serial != "" {
		f.add(`c.serial = ?`, cf.Serial)
	}
	if cf.Issuer != "" {
		f.add(`c.issuer = ?`, cf.Issuer)
	}
	if cf.AccountID != "" {
		f.add(`o.account_id = ?`, cf.AccountID)
	}
	if cf.Name != "" {
		f.add(orderNamed, cf.Name)
	}
	if !cf.ExpiresAfter.IsZero() {
		f.add(`c.expires > ?`, micros(cf.ExpiresAfter))
	}
	if !cf.ExpiresBefore.IsZero() {
		f.add(`c.expires <= ?`, micros(cf.ExpiresBefore))
	}
	if cf.IssuedOnly {
		f.add(`c.der IS NOT NULL`)
	}
	cols := "c." + strings.ReplaceAll(certCols, ", ", ", c.")
	q := `SELECT ` + cols + ` FROM certificates c LEFT JOIN orders o ON o.id = c.order_id` + f.where() +
		` ORDER BY c.created_at DESC, c.serial DESC` + f.limit(cf.Limit)
	return queryAll(ctx, s.r, "list certificates", scanCertificate, q, f.args...)
}

// ListAccounts searches accounts.
func (s *Store) ListAccounts(ctx context.Context, af storage.AccountFilter) ([]*storage.Account, error) {
	var f filter
	if af.ID != "" {
		f.add(`id = ?`, af.ID)
	}
	if af.Status != "" {
		f.add(`status = ?`, af.Status)
	}
	if af.Contact != "" {
		f.add(`EXISTS (SELECT 1 FROM json_each(accounts.contact) WHERE value = ?)`, af.Contact)
	}
	q := `SELECT ` + accountCols + ` FROM accounts` + f.where() + ` ORDER BY created_at DESC, id DESC` + f.limit(af.Limit)
	return queryAll(ctx, s.r, "list accounts", scanAccount, q, f.args...)
}

// ListOrders searches orders.
func (s *Store) ListOrders(ctx context.Context, of storage.OrderFilter) ([]*storage.Order, error) {
	var f filter
	if of.AccountID != "" {
		f.add(`o.account_id = ?`, of.AccountID)
	}
	if of.Status != "" {
		f.add(`o.status = ?`, of.Status)
	}
	if of.Name != "" {
		f.add(orderNamed, of.Name)
	}
	cols := "o." + strings.ReplaceAll(strings.Join(strings.Fields(orderCols), " "), ", ", ", o.")
	q := `SELECT ` + cols + ` FROM orders o` + f.where() + ` ORDER BY o.created_at DESC, o.id DESC` + f.limit(of.Limit)
	return queryAll(ctx, s.r, "list orders", scanOrder, q, f.args...)
}

// Counts counts records by state.
func (s *Store) Counts(ctx context.Context, now time.Time) (*storage.Counts, error) {
	c := &storage.Counts{Accounts: map[string]int{}, Orders: map[string]int{}, Certificates: map[string]int{}}
	for _, q := range []struct {
		into  map[string]int
		query string
		args  []any
	}{
		{c.Accounts, `SELECT status, COUNT(*) FROM accounts GROUP BY status`, nil},
		{c.Orders, `SELECT status, COUNT(*) FROM orders GROUP BY status`, nil},
		{c.Certificates, `SELECT CASE
				WHEN der IS NULL AND lint_der IS NULL THEN 'reserved'
				WHEN der IS NULL THEN 'intent'
				WHEN expires <= ? THEN 'expired'
				WHEN revoked_at IS NOT NULL THEN 'revoked'
				ELSE 'valid' END AS state, COUNT(*) FROM certificates GROUP BY state`, []any{micros(now)}},
	} {
		rows, err := s.r.QueryContext(ctx, q.query, q.args...)
		if err != nil {
			return nil, fmt.Errorf("counts: %w", err)
		}
		for rows.Next() {
			var k string
			var n int
			if err := rows.Scan(&k, &n); err != nil {
				rows.Close()
				return nil, fmt.Errorf("counts: %w", err)
			}
			q.into[k] = n
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("counts: %w", err)
		}
	}
	return c, nil
}

// RequestCRL records a CRL request as a lease that ended at the request time.
func (s *Store) RequestCRL(ctx context.Context, issuer string, at time.Time) error {
	if issuer == "" || at.IsZero() {
		return fmt.Errorf("request CRL: issuer and time are required")
	}
	_, err := s.exec(ctx, `INSERT INTO leases (name, holder, held_until) VALUES (?, 'operator', ?)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, held_until = excluded.held_until`,
		storage.CRLRequestLease(issuer), micros(at))
	if err != nil {
		return fmt.Errorf("request CRL of %q: %w", issuer, err)
	}
	return nil
}

// CRLRequested reads the latest CRL request for issuer.
func (s *Store) CRLRequested(ctx context.Context, issuer string) (time.Time, error) {
	var at int64
	err := s.r.QueryRowContext(ctx, `SELECT held_until FROM leases WHERE name = ?`, storage.CRLRequestLease(issuer)).Scan(&at)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return time.Time{}, nil
		}
		return time.Time{}, fmt.Errorf("CRL request of %q: %w", issuer, err)
	}
	return fromMicros(at), nil
}
