package api

import (
	"encoding/json"
	"log/slog"
	"net/http"

	"github.com/anvil-pki/anvil/acme"
)

// What a second front end on the same core (the ACME v1 one, api/legacy)
// writes just as this one does: it spells its bodies differently, but its
// problem headers, its JSON responses and the client's address are these.

// WriteJSON writes v as a JSON response with status.
func WriteJSON(w http.ResponseWriter, status int, v any) error { return writeJSON(w, status, v) }

// RemoteIP is the client's address as seen on the connection.
func RemoteIP(r *http.Request) string { return remoteIP(r) }

// LogProblem logs, under msg, a problem someone must look at: a server
// error, or one with a cause behind it. A client's mistake is not logged.
func LogProblem(log *slog.Logger, msg string, r *http.Request, p *acme.Problem, status int) {
	if status >= 500 || p.Cause != nil {
		log.Error(msg, "method", r.Method, "path", r.URL.Path, "problem", p.Type, "detail", p.Detail, "cause", errString(p.Cause))
	}
}

// WriteProblem writes problem p with status: its Retry-After and Location
// headers, and doc, the problem document as the front end spells it.
func WriteProblem(w http.ResponseWriter, p *acme.Problem, status int, doc any) {
	if p.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconvSeconds(p.RetryAfter))
	}
	if p.Location != "" {
		w.Header().Set("Location", p.Location)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(doc)
}
