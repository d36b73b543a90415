package sqlite

import (
	"strings"
	"testing"
	"time"
)

// TestRevokedShardListIsIndexOnly: the revoked list of a CRL shard is read
// from the covering partial index alone. Before migration 0007 the index held
// (issuer, serial) only, and each entry read its wide table row.
func TestRevokedShardListIsIndexOnly(t *testing.T) {
	s := openTemp(t)
	defer s.Close()
	rows, err := s.r.QueryContext(t.Context(), `EXPLAIN QUERY PLAN `+listRevokedShardSQL, "int", 3, micros(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(plan, "; ")
	if !strings.Contains(joined, "USING COVERING INDEX certificates_revoked_shard") || strings.Contains(joined, "TEMP B-TREE") {
		t.Fatalf("query plan of the shard's revoked list: %s; want a covering scan of certificates_revoked_shard in serial order", joined)
	}
}
