package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/anvil-pki/anvil/hsm"
	softhsmtest "github.com/anvil-pki/anvil/softhsm-test"
)

// /health test-signs with the HSM keys, and the admin listener answers anyone
// who reaches it: 1,000 requests, 8 at a time, cost one round of test
// signatures (one per key), counted by the SoftHSM2 token itself, and each
// says ok.
func TestHealthIsNotHSMWorkOnDemand(t *testing.T) {
	st := softhsmtest.New(t)
	tok, err := hsm.Open(hsm.Config{ModulePath: st.Dir.ModulePath, TokenLabel: st.Label, PIN: hsm.PINSource{File: st.PINFile}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tok.Close() })
	for i, label := range []string{"int-a", "int-b"} {
		if _, err := tok.GenerateKey(hsm.KeySpec{Label: label, ID: []byte{byte(i + 1)}, Algorithm: hsm.ECDSAP256}); err != nil {
			t.Fatal(err)
		}
	}
	// Longer than the test can take, so that exactly one check is expected.
	defer func(d time.Duration) { healthEvery = d }(healthEvery)
	healthEvery = time.Hour
	s := &server{core: &core{tokens: []*hsm.Token{tok}}}
	srv := httptest.NewServer(s.adminHandler())
	t.Cleanup(srv.Close)
	before := tok.Stats().Signs
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 125 {
				resp, err := http.Get(srv.URL + "/health")
				if err != nil {
					t.Error(err)
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
					t.Errorf("/health: %d %q", resp.StatusCode, body)
					return
				}
			}
		}()
	}
	wg.Wait()
	signs := tok.Stats().Signs - before
	t.Logf("1000 /health requests: %d HSM signatures", signs)
	if signs != 2 {
		t.Fatalf("%d HSM signatures for 1000 /health requests with 2 keys, want 2 (one check)", signs)
	}
}
