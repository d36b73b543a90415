package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/anvil-pki/anvil/storage"
)

var _ storage.Admin = (*Store)(nil)

// filter builds a WHERE clause from the conditions that are set; each
// condition writes its placeholder as %s and gets the next $n.
type filter struct {
	conds []string
	args  []any
}

func (f *filter) add(cond string, arg any) {
	f.args = append(f.args, arg)
	f.conds = append(f.conds, fmt.Sprintf(cond, fmt.Sprintf("$%d", len(f.args))))
}

func (f *filter) addPlain(cond string) { f.conds = append(f.conds, cond) }

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
	return fmt.Sprintf(" LIMIT $%d", len(f.args))
}

// orderNamed is the condition that an order (alias o) has an identifier with
// the given value: jsonb containment, whatever the identifier's type.
const orderNamed = `o.identifiers @> jsonb_build_array(jsonb_build_object('value', %s::text))`

// ListCertificates searches the ledger; account and name go through the order.
func (s *Store) ListCertificates(ctx context.Context, cf storage.CertificateFilter) ([]*storage.Certificate, error) {
	var f filter
	if cf.Serial != "" {
		f.add(`c.serial = %s`, cf.Serial)
	}
	if cf.Issuer != "" {
		f.add(`c.issuer = %s`, cf.Issuer)
	}
	if cf.AccountID != "" {
		f.add(`o.account_id = %s`, cf.AccountID)
	}
	if cf.Name != "" {
		f.add(orderNamed, cf.Name)
	}
	if !cf.ExpiresAfter.IsZero() {
		f.add(`c.expires > %s`, ts(cf.ExpiresAfter))
	}
	if !cf.ExpiresBefore.IsZero() {
		f.add(`c.expires <= %s`, ts(cf.ExpiresBefore))
	}
	if cf.IssuedOnly {
		f.addPlain(`c.der IS NOT NULL`)
	}
	cols := "c." + strings.ReplaceAll(certCols, ", ", ", c.")
	q := `SELECT ` + cols + ` FROM certificates c LEFT JOIN orders o ON o.id = c.order_id` + f.where() +
		` ORDER BY c.created_at DESC, c.serial DESC` + f.limit(cf.Limit)
	return queryAll(ctx, s.pool, "list certificates", scanCertificate, q, f.args...)
}

// ListAccounts searches accounts.
func (s *Store) ListAccounts(ctx context.Context, af storage.AccountFilter) ([]*storage.Account, error) {
	var f filter
	if af.ID != "" {
		f.add(`id = %s`, af.ID)
	}
	if af.Status != "" {
		f.add(`status = %s`, af.Status)
	}
	if af.Contact != "" {
		f.add(`%s = ANY (contact)`, af.Contact)
	}
	q := `SELECT ` + accountCols + ` FROM accounts` + f.where() + ` ORDER BY created_at DESC, id DESC` + f.limit(af.Limit)
	return queryAll(ctx, s.pool, "list accounts", scanAccount, q, f.args...)
}

// ListOrders searches orders.
func (s *Store) ListOrders(ctx context.Context, of storage.OrderFilter) ([]*storage.Order, error) {
	var f filter
	if of.AccountID != "" {
		f.add(`o.account_id = %s`, of.AccountID)
	}
	if of.Status != "" {
		f.add(`o.status = %s`, of.Status)
	}
	if of.Name != "" {
		f.add(orderNamed, of.Name)
	}
	cols := "o." + strings.ReplaceAll(strings.Join(strings.Fields(orderCols), " "), ", ", ", o.")
	q := `SELECT ` + cols + ` FROM orders o` + f.where() + ` ORDER BY o.created_at DESC, o.id DESC` + f.limit(of.Limit)
	return queryAll(ctx, s.pool, "list orders", scanOrder, q, f.args...)
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
				WHEN expires <= $1 THEN 'expired'
				WHEN revoked_at IS NOT NULL THEN 'revoked'
				ELSE 'valid' END AS state, COUNT(*) FROM certificates GROUP BY state`, []any{ts(now)}},
	} {
		rows, err := s.pool.Query(ctx, q.query, q.args...)
		if err != nil {
			return nil, fmt.Errorf("counts: %w", err)
		}
		for rows.Next() {
			var k string
			var n int64
			if err := rows.Scan(&k, &n); err != nil {
				rows.Close()
				return nil, fmt.Errorf("counts: %w", err)
			}
			q.into[k] = int(n)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
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
	_, err := s.pool.Exec(ctx, `INSERT INTO leases (name, holder, held_until) VALUES ($1, 'operator', $2)
		ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, held_until = EXCLUDED.held_until`,
		storage.CRLRequestLease(issuer), ts(at))
	if err != nil {
		return fmt.Errorf("request CRL of %q: %w", issuer, err)
	}
	return nil
}

// CRLRequested reads the latest CRL request for issuer.
func (s *Store) CRLRequested(ctx context.Context, issuer string) (time.Time, error) {
	var at time.Time
	err := s.pool.QueryRow(ctx, `SELECT held_until FROM leases WHERE name = $1`, storage.CRLRequestLease(issuer)).Scan(&at)
	if err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return time.Time{}, nil
		}
		return time.Time{}, fmt.Errorf("CRL request of %q: %w", issuer, err)
	}
	return fromTS(at), nil
}
