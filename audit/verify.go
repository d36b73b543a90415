package audit

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
)

// VerifyOptions changes what Verify accepts.
type VerifyOptions struct {
	// Live accepts a file that does not end with a shutdown checkpoint, as the
	// file of a running process does; the lines after its last checkpoint are
	// counted in Report.Unsigned.
	Live bool
}

// Report is what Verify found.
type Report struct {
	Lines       int
	Runs        int    // start checkpoints: process runs that wrote the file
	Checkpoints int    // signed lines, start and shutdown included
	LastSigned  int    // line number of the last checkpoint
	Unsigned    int    // lines after it
	Closed      bool   // the file ends with a shutdown checkpoint
	Head        string // SHA-256 of the last line
	// Unclean lists the runs that ended without a shutdown checkpoint (a
	// crash, or a tail cut while the process was stopped) and were followed by
	// another run, whose checkpoints now cover lines their own run never signed.
	Unclean []Boundary
}

// Boundary is a run that ended without its shutdown checkpoint.
type Boundary struct {
	StartLine  int // the next run's start checkpoint
	LastSigned int // the last line the ended run signed
	Unsigned   int // lines between the two
}

// LineError names the first bad line and why.
type LineError struct {
	Line   int
	Reason string
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Reason) }

// Verify reads a whole audit file and checks its chain and its checkpoint
// signatures against pub. It returns what it found and, for the first line that
// is wrong, a *LineError.
func Verify(r io.Reader, pub crypto.PublicKey, opts VerifyOptions) (*Report, error) {
	if _, err := KeyFingerprint(pub); err != nil {
		return nil, err
	}
	rep := &Report{Head: zeroHash}
	br := bufio.NewReader(r)
	expectStart := true // the first line, and the line after a shutdown
	run := ""
	for n := 1; ; n++ {
		raw, err := br.ReadBytes('\n')
		if len(raw) == 0 && errors.Is(err, io.EOF) {
			break
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return rep, fmt.Errorf("reading line %d: %w", n, err)
		}
		bad := func(format string, args ...any) (*Report, error) {
			return rep, &LineError{Line: n, Reason: fmt.Sprintf(format, args...)}
		}
		if !bytes.HasSuffix(raw, []byte("\n")) {
			return bad("incomplete: no newline at the end of the file (a write cut short, or an edit)")
		}
		raw = raw[:len(raw)-1]
		var l line
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			return bad("not an audit line (%v)", err)
		}
		if dec.More() {
			return bad("not an audit line (data after its JSON object)")
		}
		if l.Seq != uint64(n) {
			return bad("carries line number %d where %d belongs: lines were removed, inserted or reordered before it", l.Seq, n)
		}
		if l.Prev != rep.Head {
			if n == 1 {
				return bad("the first line of a file must chain from %s…, not %.12s…: the lines before it were removed", zeroHash[:12], l.Prev)
			}
			return bad("does not chain: it names %.12s… as the SHA-256 of line %d, which is %.12s…: line %d was edited, or lines were removed, inserted or reordered here",
				l.Prev, n-1, rep.Head, n-1)
		}
		var reason string
		if l.Type == TypeCheckpoint {
			var d struct {
				Reason     string `json:"reason"`
				PriorLines *int   `json:"prior_lines"`
			}
			if err := json.Unmarshal(l.Data, &d); err != nil {
				return bad("checkpoint data does not parse: %v", err)
			}
			reason = d.Reason
			if err := checkSignature(raw, l.Sig, pub); err != nil {
				return bad("checkpoint signature does not verify (%v): the line was edited, or not signed by this audit key", err)
			}
			switch reason {
			case ReasonStart:
				if d.PriorLines == nil || *d.PriorLines != n-1 {
					return bad("start checkpoint does not record the %d lines before it", n-1)
				}
				if n > 1 && !rep.Closed {
					rep.Unclean = append(rep.Unclean, Boundary{StartLine: n, LastSigned: rep.LastSigned, Unsigned: n - 1 - rep.LastSigned})
				}
				run = l.Run
				rep.Runs++
			case ReasonInterval, ReasonShutdown:
			default:
				return bad("checkpoint reason %q is unknown", reason)
			}
			rep.Checkpoints++
			rep.LastSigned = n
		} else if l.Sig != "" {
			return bad("an event line carries a signature: only checkpoints do")
		}
		if expectStart && reason != ReasonStart {
			if n == 1 {
				return bad("the first line must be a signed start checkpoint")
			}
			return bad("follows the shutdown checkpoint of line %d but is not a signed start checkpoint: it was added by hand", n-1)
		}
		if l.Run != run {
			return bad("belongs to run %q, but run %q is the one started at the last start checkpoint: lines of another run were spliced in", l.Run, run)
		}
		rep.Closed = reason == ReasonShutdown
		expectStart = rep.Closed
		sum := sha256.Sum256(raw)
		rep.Head = hex.EncodeToString(sum[:])
		rep.Lines = n
	}
	if rep.Lines == 0 {
		return rep, &LineError{Line: 1, Reason: "the file is empty: even a run that recorded nothing writes a start checkpoint"}
	}
	rep.Unsigned = rep.Lines - rep.LastSigned
	if !rep.Closed && !opts.Live {
		if rep.Unsigned == 0 {
			return rep, &LineError{Line: rep.Lines, Reason: "the file ends with a periodic checkpoint, not a shutdown one: its process is still running (verify with --live), it crashed, or the file's tail was cut after this line"}
		}
		return rep, &LineError{Line: rep.LastSigned + 1, Reason: fmt.Sprintf(
			"lines %d to %d (%d) come after the last signed checkpoint (line %d) and the file does not end with a shutdown checkpoint: its process is still running (verify with --live), it crashed, the tail was cut, or these lines were added by hand",
			rep.LastSigned+1, rep.Lines, rep.Unsigned, rep.LastSigned)}
	}
	return rep, nil
}

// checkSignature checks the sig member, which must end the line, over the
// line without it.
func checkSignature(raw []byte, sig string, pub crypto.PublicKey) error {
	suffix := `,"sig":"` + sig + `"}`
	if sig == "" || !bytes.HasSuffix(raw, []byte(suffix)) {
		return errors.New("no signature as the line's last member")
	}
	body := append(raw[:len(raw)-len(suffix):len(raw)-len(suffix)], '}')
	s, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return fmt.Errorf("signature is not base64: %w", err)
	}
	return verifySignature(pub, signedDigest(body), s)
}

func verifySignature(pub crypto.PublicKey, digest, sig []byte) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, digest, sig) {
			return errors.New("bad ECDSA signature")
		}
		return nil
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, sig)
	}
	return fmt.Errorf("unsupported audit key type %T", pub)
}

// KeyFingerprint is the SHA-256 of the key's SubjectPublicKeyInfo, hex: what
// checkpoints record so that a reader sees which key signed them.
func KeyFingerprint(pub crypto.PublicKey) (string, error) {
	switch pub.(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey:
	default:
		return "", fmt.Errorf("audit key must be ECDSA or RSA, not %T", pub)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// ParsePublicKeyPEM reads the audit public key from a PEM "PUBLIC KEY" (what
// the key ceremony writes) or a "CERTIFICATE".
func ParsePublicKeyPEM(b []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	switch block.Type {
	case "PUBLIC KEY":
		return x509.ParsePKIXPublicKey(block.Bytes)
	case "CERTIFICATE":
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		return c.PublicKey, nil
	}
	return nil, fmt.Errorf("PEM block %q: want PUBLIC KEY or CERTIFICATE", block.Type)
}
