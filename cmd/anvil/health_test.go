package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/anvil-pki/anvil/hsm"
	"github.com/anvil-pki/anvil/metrics"
	softhsmtest "github.com/anvil-pki/anvil/softhsm-test"
)

// The admin listener answers anyone who reaches it: 1,000 /health requests, 8
// at a time, cost no HSM signature (counted by the SoftHSM2 token itself),
// because /health answers from the tokens' known state, and each says ok.
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
	c := &core{tokens: []*hsm.Token{tok}, metrics: metrics.New()}
	srv := httptest.NewServer(c.adminHandler(nil))
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
				if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), "ok\n") {
					t.Errorf("/health: %d %q", resp.StatusCode, body)
					return
				}
			}
		}()
	}
	wg.Wait()
	signs := tok.Stats().Signs - before
	t.Logf("1000 /health requests: %d HSM signatures", signs)
	if signs != 0 {
		t.Fatalf("%d HSM signatures for 1000 /health requests, want none", signs)
	}
}
