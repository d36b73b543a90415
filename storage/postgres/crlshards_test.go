package postgres

import (
	"strings"
	"testing"
	"time"
)

// TestRevokedShardListIsIndexOnly: the revoked list of a CRL shard can be
// read by an index-only scan of the covering partial index. Sequential and
// bitmap scans are turned off so that the planner shows what the index can
// do on an empty table; were the index not covering, this would be a plain
// Index Scan that reads each wide row.
func TestRevokedShardListIsIndexOnly(t *testing.T) {
	s := openFresh(t)
	defer s.Close()
	ctx := t.Context()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	for _, set := range []string{`SET LOCAL enable_seqscan = off`, `SET LOCAL enable_bitmapscan = off`} {
		if _, err := tx.Exec(ctx, set); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := tx.Query(ctx, `EXPLAIN `+listRevokedShardSQL, "int", 3, ts(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	var plan []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, line)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(plan, "\n")
	if !strings.Contains(joined, "Index Only Scan using certificates_revoked_shard") || strings.Contains(joined, "Sort") {
		t.Fatalf("query plan of the shard's revoked list:\n%s\nwant an index-only scan of certificates_revoked_shard in serial order", joined)
	}
}
