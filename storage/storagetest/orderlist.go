package storagetest

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anvil-pki/anvil/storage"
)

// createOrdersAt stores an order of acct per creation time, named prefix-NN,
// and returns their IDs newest first (ties broken by ID, descending: the
// order ListOrderIDs must follow).
func createOrdersAt(t *testing.T, s storage.Store, acct, prefix string, created ...time.Time) []string {
	t.Helper()
	type entry struct {
		id string
		at time.Time
	}
	var entries []entry
	for i, c := range created {
		o := newOrder(name(prefix, i), acct, "pending")
		o.CreatedAt, o.UpdatedAt = c, c
		must(t, s.CreateOrder(t.Context(), o, nil), "CreateOrder "+o.ID)
		entries = append(entries, entry{o.ID, c})
	}
	slices.SortFunc(entries, func(a, b entry) int {
		if c := b.at.Compare(a.at); c != 0 {
			return c
		}
		return strings.Compare(b.id, a.id)
	})
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = e.id
	}
	return ids
}

// listAll pages through acct's orders limit at a time, checking each page's
// size, and returns every ID in the order given.
func listAll(t *testing.T, s storage.Store, acct string, limit int) []string {
	t.Helper()
	var all []string
	cursor := ""
	for page := 0; ; page++ {
		if page > 100 {
			t.Fatal("ListOrderIDs never returned an empty cursor")
		}
		ids, next, err := s.ListOrderIDs(t.Context(), acct, cursor, limit)
		must(t, err, "ListOrderIDs")
		if len(ids) > limit {
			t.Fatalf("page %d has %d IDs, limit %d", page, len(ids), limit)
		}
		if next != "" && len(ids) != limit {
			t.Fatalf("page %d has %d IDs and a next cursor; only the last page may be short", page, len(ids))
		}
		all = append(all, ids...)
		if next == "" {
			return all
		}
		cursor = next
	}
}

func testListOrderIDs(t *testing.T, s storage.Store) {
	ctx := t.Context()
	a := createAccount(t, s, "key-a")
	b := createAccount(t, s, "key-b")
	// Three orders share a creation time, so the tie-break is exercised.
	want := createOrdersAt(t, s, a.ID, "a",
		at(time.Minute), at(3*time.Minute), at(2*time.Minute), at(2*time.Minute),
		at(5*time.Minute), at(2*time.Minute), at(4*time.Minute))
	createOrdersAt(t, s, b.ID, "b", at(time.Minute), at(6*time.Minute), at(2*time.Minute))

	for _, limit := range []int{1, 2, 3, 7, 8, 100} {
		if got := listAll(t, s, a.ID, limit); !slices.Equal(got, want) {
			t.Fatalf("limit %d: listed %v, want %v", limit, got, want)
		}
	}

	ids, next, err := s.ListOrderIDs(ctx, a.ID, "", 7)
	must(t, err, "ListOrderIDs of exactly one page")
	if len(ids) != 7 || next != "" {
		t.Fatalf("a page holding the last order must end the list: %d IDs, cursor %q", len(ids), next)
	}

	ids, next, err = s.ListOrderIDs(ctx, "no-orders", "", 10)
	must(t, err, "ListOrderIDs of an account without orders")
	if len(ids) != 0 || next != "" {
		t.Fatalf("no orders: got %v and cursor %q", ids, next)
	}

	_, _, err = s.ListOrderIDs(ctx, a.ID, "not a cursor!", 10)
	wantErr(t, err, storage.ErrNotFound, "ListOrderIDs with a malformed cursor")
}

// testListOrderIDsStableCursor: orders created while a client pages do not
// shift the pages after its cursor.
func testListOrderIDsStableCursor(t *testing.T, s storage.Store) {
	ctx := t.Context()
	a := createAccount(t, s, "key-a")
	want := createOrdersAt(t, s, a.ID, "old",
		at(time.Minute), at(2*time.Minute), at(3*time.Minute), at(4*time.Minute), at(5*time.Minute))

	first, cursor, err := s.ListOrderIDs(ctx, a.ID, "", 2)
	must(t, err, "first page")
	// Newer orders arrive between the pages.
	createOrdersAt(t, s, a.ID, "new", at(time.Hour), at(2*time.Hour))

	got := append([]string(nil), first...)
	for cursor != "" {
		var ids []string
		ids, cursor, err = s.ListOrderIDs(ctx, a.ID, cursor, 2)
		must(t, err, "next page")
		got = append(got, ids...)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paging across inserts listed %v, want %v", got, want)
	}
}
