package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Sync policies: when a written line is forced to stable storage.
const (
	// SyncAlways fsyncs before Record returns. Concurrent records share one
	// fsync (group commit): each waits only until an fsync that started after
	// its write has finished.
	SyncAlways = "always"
	// SyncInterval fsyncs every Config.SyncInterval, and at each checkpoint and
	// at Close. A line is in the file (and survives the process dying) before
	// Record returns, but an operating-system crash may lose the last interval.
	SyncInterval = "interval"
)

// Config configures a Log.
type Config struct {
	// Path is the file, one per process. It is created if missing and
	// appended to otherwise; the new run's chain continues from its last line.
	Path string
	// Node names the process in every line (e.g. the host name of a front
	// end), so that the files of several nodes can be told apart.
	Node string
	// Sync is SyncAlways (the default) or SyncInterval.
	Sync         string
	SyncInterval time.Duration // default 1s
	// CheckpointInterval is how often the head is signed while new lines
	// arrive (default 5m). Checkpoints are also written at start and Close.
	CheckpointInterval time.Duration
	// Signer is the audit key in the HSM: ECDSA (P-256, P-384) or RSA.
	Signer crypto.Signer
	Logger *slog.Logger
	Now    func() time.Time
}

// Log is an open audit log. Its methods are safe for concurrent use.
type Log struct {
	cfg  Config
	f    *os.File
	run  string
	key  string // SHA-256 of the signer's SubjectPublicKeyInfo, hex
	log  *slog.Logger
	stop chan struct{}
	done chan struct{}

	mu       sync.Mutex
	seq      uint64 // line number of the last line written
	head     string // SHA-256 of the last line written, hex
	lastCP   uint64 // line number of the last checkpoint
	err      error  // set when a write failed: the chain cannot go on
	closed   bool
	closing  bool // a Close is under way
	syncMu   sync.Mutex
	syncedTo uint64 // guarded by syncMu

	pendMu  sync.Mutex
	pending []Event       // RecordAsync's events, not yet written
	wake    chan struct{} // tells loop there are pending events
}

// zeroHash is the prev of the first line of a file.
var zeroHash = strings.Repeat("0", 64)

// signDomain separates checkpoint signatures from anything else the key
// could ever sign: the signed digest is SHA-256(signDomain || line without
// its signature).
const signDomain = "anvil audit checkpoint v1\x00"

// line is one line of the file. The field order is the order on disk; sig is
// last so that the signed bytes are the line with that member cut off.
type line struct {
	Seq  uint64          `json:"seq"`
	Time string          `json:"time"`
	Node string          `json:"node"`
	Run  string          `json:"run"`
	Type string          `json:"type"`
	Data json.RawMessage `json:"data,omitempty"`
	Prev string          `json:"prev"`
	Sig  string          `json:"sig,omitempty"`
}

// Open opens (or creates) the file, takes an exclusive lock on it so that no
// second process writes the same chain, reads where the chain stands, and
// writes a signed start checkpoint that records what it found.
func Open(cfg Config) (*Log, error) {
	if cfg.Path == "" {
		return nil, errors.New("audit: no path")
	}
	if cfg.Signer == nil {
		return nil, errors.New("audit: no signing key")
	}
	switch cfg.Sync {
	case "":
		cfg.Sync = SyncAlways
	case SyncAlways, SyncInterval:
	default:
		return nil, fmt.Errorf("audit: sync %q: want %s or %s", cfg.Sync, SyncAlways, SyncInterval)
	}
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = time.Second
	}
	if cfg.CheckpointInterval <= 0 {
		cfg.CheckpointInterval = 5 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Node == "" {
		cfg.Node, _ = os.Hostname()
	}
	fp, err := KeyFingerprint(cfg.Signer.Public())
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	f, err := os.OpenFile(cfg.Path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("audit: %s is in use by another process (each process needs its own audit file): %w", cfg.Path, err)
	}
	st, err := scan(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("audit: %s: %w", cfg.Path, err)
	}
	runID := make([]byte, 8)
	rand.Read(runID)
	l := &Log{
		cfg: cfg, f: f, run: hex.EncodeToString(runID), key: fp, log: cfg.Logger,
		stop: make(chan struct{}), done: make(chan struct{}), wake: make(chan struct{}, 1),
		seq: st.lines, head: st.head, lastCP: st.lastCP, syncedTo: st.lines,
	}
	start := map[string]any{
		"reason":         ReasonStart,
		"key":            fp,
		"pid":            os.Getpid(),
		"prior_lines":    st.lines,
		"prior_closed":   st.closed,
		"prior_unsigned": st.lines - st.lastCP,
	}
	if err := l.checkpoint(start); err != nil {
		f.Close()
		return nil, err
	}
	if st.lines > 0 && !st.closed {
		l.log.Warn("audit: the previous run did not end with a shutdown checkpoint (a crash, or a cut tail); the start checkpoint records it",
			"path", cfg.Path, "prior_lines", st.lines, "prior_unsigned", st.lines-st.lastCP)
	}
	go l.loop()
	return l, nil
}

// tailState is where the chain of an existing file stands.
type tailState struct {
	lines  uint64
	head   string
	lastCP uint64
	closed bool // the last line is a shutdown checkpoint
}

// scan reads the file to its end. It checks only what appending needs: whole
// lines, and which were checkpoints; `anvil admin audit verify` checks the rest.
func scan(f *os.File) (tailState, error) {
	st := tailState{head: zeroHash}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return st, err
	}
	r := bufio.NewReader(f)
	for {
		b, err := r.ReadBytes('\n')
		if len(b) > 0 && !bytes.HasSuffix(b, []byte("\n")) {
			return st, fmt.Errorf("line %d is incomplete (no newline at the end of the file: a write cut short?); move the file aside and verify it with anvil admin audit verify", st.lines+1)
		}
		if len(b) > 0 {
			b = b[:len(b)-1]
			st.lines++
			sum := sha256.Sum256(b)
			st.head = hex.EncodeToString(sum[:])
			var l struct {
				Type string `json:"type"`
				Data struct {
					Reason string `json:"reason"`
				} `json:"data"`
			}
			if json.Unmarshal(b, &l) == nil && l.Type == TypeCheckpoint {
				st.lastCP = st.lines
				st.closed = l.Data.Reason == ReasonShutdown
			} else {
				st.closed = false
			}
		}
		if errors.Is(err, io.EOF) {
			return st, nil
		}
		if err != nil {
			return st, err
		}
	}
}

// Record appends one event and, with SyncAlways, fsyncs it before returning.
// An error means the event may not be in the log: a caller whose response
// depends on it fails the request rather than answer unaudited.
func (l *Log) Record(ctx context.Context, ev Event) error {
	if ev.Type == "" || ev.Type == TypeCheckpoint {
		return fmt.Errorf("audit: event type %q may not be recorded", ev.Type)
	}
	var data json.RawMessage
	if ev.Data != nil {
		b, err := json.Marshal(ev.Data)
		if err != nil {
			return fmt.Errorf("audit: %s: %w", ev.Type, err)
		}
		data = b
	}
	l.mu.Lock()
	seq, err := l.appendLocked(ev.Type, data)
	l.mu.Unlock()
	if err != nil {
		return err
	}
	if l.cfg.Sync == SyncAlways {
		return l.syncTo(seq)
	}
	return nil
}

// RecordAsync queues an event to be written by the log's own goroutine, and
// returns at once. It is for events no response waits on and that may be
// raised from inside the audit key's own Sign (an HSM hook reporting the token
// down while a checkpoint is being signed): Record there would wait for the
// checkpoint, which waits for the Sign. Events queued before Close are written
// before the shutdown checkpoint; a write that fails is logged.
func (l *Log) RecordAsync(ev Event) {
	l.pendMu.Lock()
	l.pending = append(l.pending, ev)
	l.pendMu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// flushPending writes the queued events.
func (l *Log) flushPending() {
	l.pendMu.Lock()
	evs := l.pending
	l.pending = nil
	l.pendMu.Unlock()
	for _, ev := range evs {
		if err := l.Record(context.Background(), ev); err != nil {
			l.log.Error("audit: queued event not recorded", "type", ev.Type, "error", err)
		}
	}
}

// appendLocked writes one line with a single write(2) on an O_APPEND file, so
// that a line is never interleaved with another, and advances the chain.
func (l *Log) appendLocked(typ string, data json.RawMessage) (uint64, error) {
	body, err := l.bodyLocked(typ, data)
	if err != nil {
		return 0, err
	}
	return l.writeLocked(body)
}

func (l *Log) bodyLocked(typ string, data json.RawMessage) ([]byte, error) {
	if l.err != nil {
		return nil, l.err
	}
	if l.closed {
		return nil, errors.New("audit: the log is closed")
	}
	return json.Marshal(line{
		Seq: l.seq + 1, Time: l.cfg.Now().UTC().Format(time.RFC3339Nano), Node: l.cfg.Node, Run: l.run,
		Type: typ, Data: data, Prev: l.head,
	})
}

func (l *Log) writeLocked(b []byte) (uint64, error) {
	if _, err := l.f.Write(append(b, '\n')); err != nil {
		// A partial line may be on disk: nothing more can chain after it.
		l.err = fmt.Errorf("audit: writing %s: %w (no further events can be recorded)", l.cfg.Path, err)
		return 0, l.err
	}
	sum := sha256.Sum256(b)
	l.head = hex.EncodeToString(sum[:])
	l.seq++
	return l.seq, nil
}

// syncTo returns once line seq is on stable storage. One fsync covers every
// line written before it started, so concurrent callers mostly find their
// line already synced by another's fsync.
func (l *Log) syncTo(seq uint64) error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	if l.syncedTo >= seq {
		return nil
	}
	l.mu.Lock()
	upto, failed := l.seq, l.err
	l.mu.Unlock()
	if failed != nil {
		return failed
	}
	if err := l.f.Sync(); err != nil {
		err = fmt.Errorf("audit: fsync %s: %w", l.cfg.Path, err)
		l.mu.Lock()
		l.err = err
		l.mu.Unlock()
		return err
	}
	l.syncedTo = upto
	return nil
}

// checkpoint signs the head as a checkpoint line and syncs it.
func (l *Log) checkpoint(data map[string]any) error {
	l.mu.Lock()
	seq, err := l.checkpointLocked(data)
	l.mu.Unlock()
	if err != nil {
		return err
	}
	return l.syncTo(seq)
}

func (l *Log) checkpointLocked(data map[string]any) (uint64, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return 0, err
	}
	body, err := l.bodyLocked(TypeCheckpoint, raw)
	if err != nil {
		return 0, err
	}
	digest := signedDigest(body)
	sig, err := l.cfg.Signer.Sign(rand.Reader, digest, crypto.SHA256)
	if err != nil {
		return 0, fmt.Errorf("audit: signing checkpoint: %w", err)
	}
	// An HSM can return a corrupted signature as success: a checkpoint that
	// does not verify is worse than none.
	if err := verifySignature(l.cfg.Signer.Public(), digest, sig); err != nil {
		return 0, fmt.Errorf("audit: the HSM's checkpoint signature does not verify: %w", err)
	}
	signed := append(body[:len(body)-1:len(body)-1], `,"sig":"`+base64.StdEncoding.EncodeToString(sig)+`"}`...)
	seq, err := l.writeLocked(signed)
	if err != nil {
		return 0, err
	}
	l.lastCP = seq
	// A second place for the signed head: log shipping keeps it where the
	// audit file's owner cannot rewrite it together with the file.
	l.log.Info("audit checkpoint", "path", l.cfg.Path, "line", seq, "head", l.head, "reason", data["reason"])
	return seq, nil
}

// Checkpoint signs the head now if lines were written since the last one.
func (l *Log) Checkpoint() error {
	l.mu.Lock()
	if l.seq == l.lastCP {
		l.mu.Unlock()
		return nil
	}
	l.mu.Unlock()
	return l.checkpoint(map[string]any{"reason": ReasonInterval, "key": l.key})
}

func (l *Log) loop() {
	defer close(l.done)
	cp := time.NewTicker(l.cfg.CheckpointInterval)
	defer cp.Stop()
	var syncC <-chan time.Time
	if l.cfg.Sync == SyncInterval {
		t := time.NewTicker(l.cfg.SyncInterval)
		defer t.Stop()
		syncC = t.C
	}
	for {
		select {
		case <-l.stop:
			l.flushPending()
			return
		case <-l.wake:
			l.flushPending()
		case <-cp.C:
			if err := l.Checkpoint(); err != nil {
				// Lines keep chaining; the next checkpoint covers them.
				l.log.Error("audit checkpoint failed", "path", l.cfg.Path, "error", err)
			}
		case <-syncC:
			l.mu.Lock()
			seq := l.seq
			l.mu.Unlock()
			if err := l.syncTo(seq); err != nil {
				l.log.Error("audit fsync failed", "path", l.cfg.Path, "error", err)
			}
		}
	}
}

// Path is the file written.
func (l *Log) Path() string { return l.cfg.Path }

// Head returns the line number and SHA-256 of the last line written.
func (l *Log) Head() (uint64, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq, l.head
}

// Err reports a failed write, after which nothing more is recorded.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Close writes the signed shutdown checkpoint, syncs and closes the file. A
// file that ends with a shutdown checkpoint is complete; one that does not
// was cut, or its process crashed or still runs.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed || l.closing {
		l.mu.Unlock()
		return nil
	}
	// Only the first Close goes on: a second one at the same time would close
	// l.stop twice.
	l.closing = true
	l.mu.Unlock()
	close(l.stop)
	<-l.done
	err := l.checkpoint(map[string]any{"reason": ReasonShutdown, "key": l.key})
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	if cerr := l.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("audit: %w", cerr)
	}
	return err
}

func signedDigest(body []byte) []byte {
	h := sha256.New()
	h.Write([]byte(signDomain))
	h.Write(body)
	return h.Sum(nil)
}
