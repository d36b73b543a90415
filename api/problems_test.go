package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/anvil-pki/anvil/acme"
)

// Every problem acme makes goes on the wire with the type and status a client
// of RFC 8555 (and of Anvil before statuses left acme) sees: the body's
// status equals the response's, and Retry-After and Location go with it.
func TestProblemStatuses(t *testing.T) {
	s := testServer(t)
	typed := func(typ string) *acme.Problem { return &acme.Problem{Type: acme.ProblemNS + typ, Detail: "d"} }
	for _, tc := range []struct {
		name       string
		err        error
		typ        string
		status     int
		retryAfter string
		location   string
	}{
		{"malformed", acme.Malformed("x"), "malformed", 400, "", ""},
		{"not found", acme.NotFound("x"), "malformed", 404, "", ""},
		{"method not allowed", WithStatus(http.StatusMethodNotAllowed, acme.Malformed("x")), "malformed", 405, "", ""},
		{"media type", WithStatus(http.StatusUnsupportedMediaType, acme.Malformed("x")), "malformed", 415, "", ""},
		{"too large", WithStatus(http.StatusRequestEntityTooLarge, acme.Malformed("x")), "malformed", 413, "", ""},
		{"conflict", acme.Conflict("https://acme.test/acme/acct/1", "x"), "malformed", 409, "", "https://acme.test/acme/acct/1"},
		{"badNonce", acme.BadNonce("x"), "badNonce", 400, "", ""},
		{"unauthorized", acme.Unauthorized("x"), "unauthorized", 403, "", ""},
		{"accountDoesNotExist", acme.AccountDoesNotExist("x"), "accountDoesNotExist", 400, "", ""},
		{"badSignatureAlgorithm", acme.BadSignatureAlgorithm([]string{"ES256"}, "x"), "badSignatureAlgorithm", 400, "", ""},
		{"badPublicKey", acme.BadPublicKey("x"), "badPublicKey", 400, "", ""},
		{"badCSR", acme.BadCSR("x"), "badCSR", 400, "", ""},
		{"orderNotReady", acme.OrderNotReady("x"), "orderNotReady", 403, "", ""},
		{"rejectedIdentifier", acme.RejectedIdentifier("x"), "rejectedIdentifier", 400, "", ""},
		{"unsupportedIdentifier", acme.UnsupportedIdentifier("x"), "unsupportedIdentifier", 400, "", ""},
		{"invalidContact", acme.InvalidContact("x"), "invalidContact", 400, "", ""},
		{"unsupportedContact", acme.UnsupportedContact("x"), "unsupportedContact", 400, "", ""},
		{"userActionRequired", typed("userActionRequired"), "userActionRequired", 403, "", ""},
		{"externalAccountRequired", acme.ExternalAccountRequired("x"), "externalAccountRequired", 401, "", ""},
		{"alreadyRevoked", acme.AlreadyRevoked("x"), "alreadyRevoked", 400, "", ""},
		{"badRevocationReason", acme.BadRevocationReason("x"), "badRevocationReason", 400, "", ""},
		{"alreadyReplaced", typed("alreadyReplaced"), "alreadyReplaced", 409, "", ""},
		{"rateLimited", acme.RateLimited(90*time.Second, "x"), "rateLimited", 429, "90", ""},
		{"invalidProfile", acme.InvalidProfile("x"), "invalidProfile", 400, "", ""},
		{"serverInternal", acme.ServerInternal(errors.New("disk full"), "x"), "serverInternal", 500, "", ""},
		{"unavailable", acme.ServiceUnavailable(errors.New("token gone"), 5*time.Second, "x"), "serverInternal", 503, "5", ""},
		{"not a problem", errors.New("bare error"), "serverInternal", 500, "", ""},
		{"wrapped", errors.Join(errors.New("context"), acme.OrderNotReady("x")), "orderNotReady", 403, "", ""},
		// Validation failures, as stored on a challenge.
		{"caa", typed("caa"), "caa", 403, "", ""},
		{"connection", typed("connection"), "connection", 400, "", ""},
		{"incorrectResponse", typed("incorrectResponse"), "incorrectResponse", 400, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			s.writeProblem(rec, httptest.NewRequest(http.MethodPost, "https://acme.test/x", nil), tc.err)
			var doc struct {
				Type       string
				Status     int
				Detail     string
				Algorithms []string
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
				t.Fatalf("not JSON: %q", rec.Body)
			}
			if rec.Code != tc.status || doc.Status != tc.status || doc.Type != acme.ProblemNS+tc.typ {
				t.Errorf("HTTP %d, document %s with status %d; want %s with %d in both", rec.Code, doc.Type, doc.Status, tc.typ, tc.status)
			}
			if got := rec.Header().Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tc.retryAfter)
			}
			if got := rec.Header().Get("Location"); got != tc.location {
				t.Errorf("Location %q, want %q", got, tc.location)
			}
			if tc.name == "not a problem" && doc.Detail != "internal error" {
				t.Errorf("detail %q: an internal error's text must not reach the client", doc.Detail)
			}
			if tc.typ == "badSignatureAlgorithm" && len(doc.Algorithms) != 1 {
				t.Errorf("algorithms %v, want [ES256]", doc.Algorithms)
			}
		})
	}
}

// A problem stored on a challenge or an order is shown with its type's status,
// whether the row was written with a status (before statuses left acme) or
// without.
func TestStoredProblemStatus(t *testing.T) {
	for stored, want := range map[string]string{
		`{"type":"urn:ietf:params:acme:error:caa","detail":"CAA forbids"}`:                             `{"type":"urn:ietf:params:acme:error:caa","detail":"CAA forbids","status":403}`,
		`{"type":"urn:ietf:params:acme:error:caa","detail":"CAA forbids","status":403}`:                `{"type":"urn:ietf:params:acme:error:caa","detail":"CAA forbids","status":403}`,
		`{"type":"urn:ietf:params:acme:error:connection","detail":"refused","status":400}`:             `{"type":"urn:ietf:params:acme:error:connection","detail":"refused","status":400}`,
		`{"type":"urn:ietf:params:acme:error:unauthorized","detail":"authorization for a is invalid"}`: `{"type":"urn:ietf:params:acme:error:unauthorized","detail":"authorization for a is invalid","status":403}`,
	} {
		if got := string(storedProblem([]byte(stored))); got != want {
			t.Errorf("stored %s\n shown %s\n  want %s", stored, got, want)
		}
	}
	if storedProblem(nil) != nil {
		t.Error("no stored problem must show no error member")
	}
}
