package audit_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/anvil-pki/anvil/audit"
	"github.com/anvil-pki/anvil/hsm"
	softhsmtest "github.com/anvil-pki/anvil/softhsm-test"
)

// hsmKey makes a real audit key on a fresh SoftHSM2 token.
func hsmKey(t *testing.T, alg hsm.Algorithm) *hsm.Key {
	t.Helper()
	return hsmKeys(t, alg, "audit")[0]
}

// hsmKeys makes keys with the given labels on one fresh SoftHSM2 token.
func hsmKeys(t *testing.T, alg hsm.Algorithm, labels ...string) []*hsm.Key {
	t.Helper()
	st := softhsmtest.New(t)
	tok, err := hsm.Open(hsm.Config{ModulePath: st.Dir.ModulePath, TokenLabel: st.Label, PIN: hsm.PINSource{File: st.PINFile}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tok.Close() })
	var keys []*hsm.Key
	for _, label := range labels {
		key, err := tok.GenerateKey(hsm.KeySpec{Label: label, Algorithm: alg})
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, key)
	}
	return keys
}

var quiet = slog.New(slog.DiscardHandler)

func open(t *testing.T, path string, key crypto.Signer) *audit.Log {
	t.Helper()
	l, err := audit.Open(audit.Config{Path: path, Node: "node-1", Signer: key, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func record(t *testing.T, l *audit.Log, typ string, data map[string]any) {
	t.Helper()
	if err := l.Record(context.Background(), audit.Event{Type: typ, Data: data}); err != nil {
		t.Fatal(err)
	}
}

func verify(t *testing.T, b []byte, key crypto.PublicKey, opts audit.VerifyOptions) (*audit.Report, error) {
	t.Helper()
	return audit.Verify(bytes.NewReader(b), key, opts)
}

// cleanLog writes what two runs of a server leave: start, events, a periodic
// checkpoint, more events, shutdown; then the same again.
//
//	1 start  2 account  3 cert  4 checkpoint  5 revoke  6 shutdown
//	7 start  8 account  9 shutdown
func cleanLog(t *testing.T, key crypto.Signer) (string, []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	l := open(t, path, key)
	record(t, l, audit.AccountCreated, map[string]any{"account": "a1", "ip": "127.0.0.1"})
	record(t, l, audit.CertIssued, map[string]any{"serial": "01ab", "names": []string{"a.example"}})
	if err := l.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	record(t, l, audit.CertRevoked, map[string]any{"serial": "01ab", "reason": "keyCompromise", "by": "account"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = open(t, path, key)
	record(t, l, audit.AccountCreated, map[string]any{"account": "a2"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, b
}

// lines splits a file into its lines, each with its newline.
func lines(b []byte) []string {
	ls := strings.SplitAfter(string(b), "\n")
	return ls[:len(ls)-1]
}

func join(ls []string) []byte {
	s := strings.Join(ls, "")
	if !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	return []byte(s)
}

func TestChainAndCheckpoints(t *testing.T) {
	for _, alg := range []hsm.Algorithm{hsm.ECDSAP256, hsm.RSA2048} {
		t.Run(string(alg), func(t *testing.T) {
			key := hsmKey(t, alg)
			_, b := cleanLog(t, key)
			rep, err := verify(t, b, key.Public(), audit.VerifyOptions{})
			if err != nil {
				t.Fatalf("verify a clean log: %v\n%s", err, b)
			}
			if rep.Lines != 9 || rep.Runs != 2 || rep.Checkpoints != 5 || !rep.Closed || rep.Unsigned != 0 || len(rep.Unclean) != 0 {
				t.Fatalf("report %+v", rep)
			}
			ls := lines(b)
			// Each line names the SHA-256 of the one before, and its own number.
			for i := 1; i < len(ls); i++ {
				var l struct {
					Seq  int    `json:"seq"`
					Prev string `json:"prev"`
					Node string `json:"node"`
				}
				if err := json.Unmarshal([]byte(ls[i]), &l); err != nil {
					t.Fatal(err)
				}
				sum := sha256.Sum256([]byte(strings.TrimSuffix(ls[i-1], "\n")))
				if l.Seq != i+1 || l.Prev != hex.EncodeToString(sum[:]) || l.Node != "node-1" {
					t.Fatalf("line %d: %+v", i+1, l)
				}
			}
			// The second run's start records the first run's head and a clean end.
			var start struct {
				Prev string `json:"prev"`
				Data struct {
					PriorLines  int  `json:"prior_lines"`
					PriorClosed bool `json:"prior_closed"`
				} `json:"data"`
			}
			json.Unmarshal([]byte(ls[6]), &start)
			if start.Data.PriorLines != 6 || !start.Data.PriorClosed {
				t.Fatalf("start line of run 2: %s", ls[6])
			}
		})
	}
}

func TestTampering(t *testing.T) {
	keys := hsmKeys(t, hsm.ECDSAP256, "audit", "other")
	key, other := keys[0], keys[1]
	_, clean := cleanLog(t, key)
	ls := lines(clean)

	edit := func(i int, from, to string) []string {
		out := append([]string(nil), ls...)
		if !strings.Contains(out[i], from) {
			t.Fatalf("line %d has no %q: %s", i+1, from, out[i])
		}
		out[i] = strings.Replace(out[i], from, to, 1)
		return out
	}
	// rechain recomputes seq and prev from line i on, as an editor who knows
	// the format would: only the checkpoint signatures can catch it.
	rechain := func(in []string, from int) []string {
		out := append([]string(nil), in...)
		for i := from; i < len(out); i++ {
			var m map[string]json.RawMessage
			if err := json.Unmarshal([]byte(out[i]), &m); err != nil {
				t.Fatal(err)
			}
			prev := strings.Repeat("0", 64)
			if i > 0 {
				sum := sha256.Sum256([]byte(strings.TrimSuffix(out[i-1], "\n")))
				prev = hex.EncodeToString(sum[:])
			}
			var old struct {
				Seq  int    `json:"seq"`
				Prev string `json:"prev"`
			}
			json.Unmarshal([]byte(out[i]), &old)
			s := strings.Replace(out[i], fmt.Sprintf(`"seq":%d,`, old.Seq), fmt.Sprintf(`"seq":%d,`, i+1), 1)
			out[i] = strings.Replace(s, `"prev":"`+old.Prev, `"prev":"`+prev, 1)
		}
		return out
	}
	handEvent := func(prevLine string, seq int, run string) string {
		sum := sha256.Sum256([]byte(strings.TrimSuffix(prevLine, "\n")))
		return fmt.Sprintf(`{"seq":%d,"time":"2026-01-01T00:00:00Z","node":"node-1","run":%q,"type":"certificate.revoked","data":{"by":"operator"},"prev":"%x"}`+"\n", seq, run, sum)
	}
	runOf := func(l string) string {
		var x struct{ Run string }
		json.Unmarshal([]byte(l), &x)
		return x.Run
	}

	cases := []struct {
		name     string
		file     []string
		opts     audit.VerifyOptions
		key      crypto.PublicKey
		line     int
		contains string
	}{
		{name: "edit an event", file: edit(2, `"01ab"`, `"01ac"`), line: 4, contains: "line 3 was edited"},
		{name: "edit an event and rechain", file: rechain(edit(1, `"a1"`, `"a9"`), 2), line: 4, contains: "signature does not verify"},
		{name: "edit the shutdown checkpoint", file: edit(8, `"reason":"shutdown"`, `"reason":"interval"`), line: 9, contains: "signature does not verify"},
		{name: "remove a line", file: append(append([]string(nil), ls[:2]...), ls[3:]...), line: 3, contains: "carries line number 4"},
		{name: "remove a line and rechain", file: rechain(append(append([]string(nil), ls[:2]...), ls[3:]...), 2), line: 3, contains: "signature does not verify"},
		{name: "reorder two lines", file: append(append(append([]string(nil), ls[:1]...), ls[2], ls[1]), ls[3:]...), line: 2, contains: "carries line number 3"},
		{name: "reorder and rechain", file: rechain(append(append(append([]string(nil), ls[:1]...), ls[2], ls[1]), ls[3:]...), 1), line: 4, contains: "signature does not verify"},
		{name: "append by hand after shutdown", file: append(append([]string(nil), ls...), handEvent(ls[8], 10, runOf(ls[8]))), line: 10, contains: "added by hand"},
		{name: "insert by hand before shutdown", file: rechain(append(append(append([]string(nil), ls[:8]...), handEvent(ls[7], 9, runOf(ls[7]))), ls[8]), 9), line: 10, contains: "signature does not verify"},
		{name: "cut the tail", file: ls[:8], line: 8, contains: "does not end with a shutdown checkpoint"},
		{name: "cut the tail at a checkpoint", file: ls[:4], line: 4, contains: "ends with a periodic checkpoint"},
		{name: "cut the head", file: ls[6:], line: 1, contains: "where 1 belongs: lines were removed"},
		{name: "another key", file: ls, key: other.Public(), line: 1, contains: "not signed by this audit key"},
		{name: "a torn last line", file: append(append([]string(nil), ls[:8]...), strings.TrimSuffix(ls[8], "}\n")), line: 9, contains: "incomplete"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pub := c.key
			if pub == nil {
				pub = key.Public()
			}
			b := join(c.file)
			if c.name == "a torn last line" {
				b = bytes.TrimSuffix(b, []byte("\n"))
			}
			_, err := verify(t, b, pub, c.opts)
			var le *audit.LineError
			if !errors.As(err, &le) || le.Line != c.line || !strings.Contains(le.Reason, c.contains) {
				t.Fatalf("verify: %v; want line %d: ...%s...", err, c.line, c.contains)
			}
		})
	}

	// The tail of a running process is not yet signed: --live accepts it and
	// says how many lines no checkpoint covers.
	rep, err := verify(t, join(ls[:8]), key.Public(), audit.VerifyOptions{Live: true})
	if err != nil || rep.Unsigned != 1 || rep.Closed {
		t.Fatalf("live verify of a file cut after line 8: %+v, %v", rep, err)
	}
}

// A process that dies leaves unsigned lines; the next run's start checkpoint
// says so, and the verifier lists the boundary.
func TestCrashAndRestart(t *testing.T) {
	key := hsmKey(t, hsm.ECDSAP256)
	path := filepath.Join(t.TempDir(), "audit.log")
	l := open(t, path, key)
	record(t, l, audit.AccountCreated, map[string]any{"account": "a1"})
	record(t, l, audit.AccountCreated, map[string]any{"account": "a2"})
	l.Crash()
	l = open(t, path, key)
	record(t, l, audit.AccountCreated, map[string]any{"account": "a3"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	rep, err := verify(t, b, key.Public(), audit.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Unclean) != 1 || rep.Unclean[0] != (audit.Boundary{StartLine: 4, LastSigned: 1, Unsigned: 2}) {
		t.Fatalf("unclean boundaries %+v", rep.Unclean)
	}
	if !strings.Contains(lines(b)[3], `"prior_closed":false`) {
		t.Fatalf("start line after a crash: %s", lines(b)[3])
	}
}

func TestOneProcessPerFile(t *testing.T) {
	key := hsmKey(t, hsm.ECDSAP256)
	path := filepath.Join(t.TempDir(), "audit.log")
	l := open(t, path, key)
	defer l.Close()
	if _, err := audit.Open(audit.Config{Path: path, Signer: key, Logger: quiet}); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second writer of one file: %v", err)
	}
}

func TestTornFileRefused(t *testing.T) {
	key := hsmKey(t, hsm.ECDSAP256)
	path := filepath.Join(t.TempDir(), "audit.log")
	os.WriteFile(path, []byte(`{"seq":1,"ty`), 0o600)
	if _, err := audit.Open(audit.Config{Path: path, Signer: key, Logger: quiet}); err == nil || !strings.Contains(err.Error(), "line 1 is incomplete") {
		t.Fatalf("open a file with a torn line: %v", err)
	}
}

// Many goroutines record at once, with checkpoints in between, under both
// sync policies: every line is whole, in order, and chained.
func TestConcurrentWriters(t *testing.T) {
	key := hsmKey(t, hsm.ECDSAP256)
	for _, policy := range []string{audit.SyncAlways, audit.SyncInterval} {
		t.Run(policy, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.log")
			l, err := audit.Open(audit.Config{Path: path, Signer: key, Sync: policy, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			const writers, each = 16, 50
			var wg sync.WaitGroup
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						if err := l.Record(context.Background(), audit.Event{Type: audit.CertIssued, Data: map[string]any{"w": w, "i": i}}); err != nil {
							t.Error(err)
							return
						}
						if i%20 == 0 {
							if err := l.Checkpoint(); err != nil {
								t.Error(err)
							}
						}
					}
				}()
			}
			wg.Wait()
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(path)
			rep, err := verify(t, b, key.Public(), audit.VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if events := rep.Lines - rep.Checkpoints; events != writers*each {
				t.Fatalf("%d event lines, want %d", events, writers*each)
			}
		})
	}
}

func TestRecordRefusesCheckpointType(t *testing.T) {
	key := hsmKey(t, hsm.ECDSAP256)
	l := open(t, filepath.Join(t.TempDir(), "audit.log"), key)
	defer l.Close()
	if err := l.Record(context.Background(), audit.Event{Type: audit.TypeCheckpoint}); err == nil {
		t.Fatal("a caller recorded an unsigned checkpoint")
	}
}

// A line added by hand to a closed file, before the next run starts: that run
// chains on and signs over it, but the line after a shutdown checkpoint must
// be a signed start checkpoint.
func TestHandAppendThenRestart(t *testing.T) {
	key := hsmKey(t, hsm.ECDSAP256)
	path, b := cleanLog(t, key)
	ls := lines(b)
	sum := sha256.Sum256([]byte(strings.TrimSuffix(ls[8], "\n")))
	forged := fmt.Sprintf(`{"seq":10,"time":"2026-01-01T00:00:00Z","node":"node-1","run":"0000000000000000","type":"certificate.revoked","data":{"by":"operator"},"prev":"%x"}`+"\n", sum)
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(forged)
	f.Close()
	l := open(t, path, key)
	record(t, l, audit.AccountCreated, map[string]any{"account": "a3"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	_, err := verify(t, b, key.Public(), audit.VerifyOptions{})
	var le *audit.LineError
	if !errors.As(err, &le) || le.Line != 10 || !strings.Contains(le.Reason, "added by hand") {
		t.Fatalf("verify: %v; want line 10 added by hand", err)
	}
}

// BenchmarkRecord is the cost of one audited event under each sync policy,
// from 8 goroutines at once (group commit shares the fsyncs).
func BenchmarkRecord(b *testing.B) {
	st := softhsmtest.New(b)
	tok, err := hsm.Open(hsm.Config{ModulePath: st.Dir.ModulePath, TokenLabel: st.Label, PIN: hsm.PINSource{File: st.PINFile}})
	if err != nil {
		b.Fatal(err)
	}
	defer tok.Close()
	key, err := tok.GenerateKey(hsm.KeySpec{Label: "audit", Algorithm: hsm.ECDSAP256})
	if err != nil {
		b.Fatal(err)
	}
	for _, policy := range []string{audit.SyncAlways, audit.SyncInterval} {
		b.Run(policy, func(b *testing.B) {
			l, err := audit.Open(audit.Config{Path: filepath.Join(b.TempDir(), "audit.log"), Signer: key, Sync: policy, Logger: quiet})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			ev := audit.Event{Type: audit.CertIssued, Data: map[string]any{"serial": "0123456789abcdef0123456789abcdef", "names": []string{"a.example.com"}}}
			b.SetParallelism(4) // 8 goroutines on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := l.Record(context.Background(), ev); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// An event raised while a checkpoint is being signed (an HSM hook on the
// audit key's own token) is queued, not deadlocked, and written before the
// shutdown checkpoint.
func TestRecordAsyncFromInsideSign(t *testing.T) {
	key := hsmKey(t, hsm.ECDSAP256)
	hook := &hookedSigner{Signer: key}
	l := open(t, filepath.Join(t.TempDir(), "audit.log"), hook)
	hook.onSign = func() { l.RecordAsync(audit.Event{Type: audit.HSMTokenDown, Data: map[string]any{"token": "t"}}) }
	record(t, l, audit.AccountCreated, nil)
	if err := l.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	hook.onSign = nil
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(l.Path())
	rep, err := verify(t, b, key.Public(), audit.VerifyOptions{})
	if err != nil || !strings.Contains(string(b), `"type":"hsm.token_down"`) || rep.Lines != 5 {
		t.Fatalf("verify: %+v %v\n%s", rep, err, b)
	}
}

type hookedSigner struct {
	crypto.Signer
	onSign func()
}

func (h *hookedSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if h.onSign != nil {
		h.onSign()
	}
	return h.Signer.Sign(r, digest, opts)
}
