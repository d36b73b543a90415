package records

import "github.com/anvil-pki/anvil/storage"

// MatchLookups fills out[i] with the authorization among found (by ID, in
// the order the query read them) whose identifier and wildcard are
// lookups[i]'s. A backend's query selects by identifier value alone and at
// most one authorization per (type, value, wildcard); the type and
// wildcard are matched here.
func MatchLookups(out []*storage.Authorization, lookups []storage.AuthzLookup, found map[string]*storage.Authorization, order []string) {
	byKey := make(map[storage.AuthzLookup]*storage.Authorization, len(order))
	for _, id := range order {
		a := found[id]
		byKey[storage.AuthzLookup{Identifier: a.Identifier, Wildcard: a.Wildcard}] = a
	}
	for i, l := range lookups {
		out[i] = byKey[l]
	}
}
