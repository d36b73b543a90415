package storagetest

import (
	"testing"

	"github.com/anvil-pki/anvil/storage"
)

// Opener returns a new, empty store for one test. The suite closes it when the
// test ends; the opener may register its own cleanups (a database to drop)
// with t.Cleanup, which run after the store is closed.
type Opener func(t *testing.T) storage.Store

// check is one behaviour of the suite, run on a fresh store.
type check struct {
	name string
	fn   func(t *testing.T, s storage.Store)
}

// suite lists every check. Each runs on its own store, in parallel with the
// others, so that no check can depend on another's leftovers.
var suite = []check{
	{"Nonces", testNonces},
	{"NonceRace", testNonceRace},
	{"Accounts", testAccounts},
	{"UpdateAccount", testUpdateAccount},
	{"RolloverAccountKey", testRolloverAccountKey},
	{"AccountKeyRace", testAccountKeyRace},
	{"CountAccountsByIP", testCountAccountsByIP},
	{"CreateOrder", testCreateOrder},
	{"CreateOrderIsAtomic", testCreateOrderIsAtomic},
	{"UpdateOrder", testUpdateOrder},
	{"FinalizeRace", testFinalizeRace},
	{"ListOrderIDs", testListOrderIDs},
	{"ListOrderIDsStableCursor", testListOrderIDsStableCursor},
	{"CountOrders", testCountOrders},
	{"OrdersReplacing", testOrdersReplacing},
	{"ClaimOrders", testClaimOrders},
	{"GetAuthorizations", testGetAuthorizations},
	{"CreateAuthorization", testCreateAuthorization},
	{"UpdateAuthorization", testUpdateAuthorization},
	{"FindValidAuthorization", testFindValidAuthorization},
	{"CountFailedAuthorizations", testCountFailedAuthorizations},
	{"FindValidAuthorizations", testFindValidAuthorizations},
	{"CountFailedAuthorizationsEach", testCountFailedAuthorizationsEach},
	{"Challenges", testChallenges},
	{"RecordValidation", testRecordValidation},
	{"ClaimChallenges", testClaimChallenges},
	{"Ledger", testLedger},
	{"CertificatesForOrder", testCertificatesForOrder},
	{"Revocation", testRevocation},
	{"LedgerOutcomes", testLedgerOutcomes},
	{"AbandonIntents", testAbandonIntents},
	{"AbandonOrphanedIntents", testAbandonOrphanedIntents},
	{"LedgerCounts", testLedgerCounts},
	{"ReleaseLeases", testReleaseLeases},
	{"ReleaseLeasesOf", testReleaseLeasesOf},
	{"CRLs", testCRLs},
	{"CRLShards", testCRLShards},
	{"EABKeys", testEABKeys},
	{"EABBindRace", testEABBindRace},
	{"TryLease", testTryLease},
	{"LeaseRace", testLeaseRace},
	{"TryLeaseAndCertificates", testTryLeaseAndCertificates},
	{"DeleteExpired", CheckDeleteExpired},
	{"TimeRoundTrip", testTimeRoundTrip},
	{"EmptyValues", testEmptyValues},
	{"Defaults", testDefaults},
}

// Run runs the whole suite against the stores that open returns, one subtest
// per behaviour.
func Run(t *testing.T, open Opener) {
	for _, c := range suite {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.fn(t, openStore(t, open))
		})
	}
}

// openStore opens a store and closes it when t ends, failing t if closing
// fails: a store that cannot close cleanly is a bug too.
func openStore(t *testing.T, open Opener) storage.Store {
	t.Helper()
	s := open(t)
	if s == nil {
		t.Fatal("opener returned a nil store")
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}
