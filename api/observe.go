package api

import (
	"net/http"
	"time"

	"github.com/gorilla/mux"
)

// Observer is told of every request and every problem document, for metrics.
// Labels it is given are bounded: the route is the mux path template (never the
// path a client sent), the problem type one of RFC 8555's.
type Observer interface {
	ObserveRequest(route, method string, status int, d time.Duration)
	ObserveProblem(problemType string)
}

type noObserver struct{}

func (noObserver) ObserveRequest(string, string, int, time.Duration) {}
func (noObserver) ObserveProblem(string)                             {}

// unmatchedRoute labels requests no route matched (404, 405).
const unmatchedRoute = "unmatched"

// routeOf is the template of the route that matched r.
func routeOf(r *http.Request) string {
	if rt := mux.CurrentRoute(r); rt != nil {
		if t, err := rt.GetPathTemplate(); err == nil {
			return t
		}
	}
	return unmatchedRoute
}

// statusWriter remembers the status a handler sent.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// observe starts timing a request; the returned function reports it.
func (s *Server) observe(w http.ResponseWriter, r *http.Request) (http.ResponseWriter, func()) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	return sw, func() {
		status := sw.status
		if status == 0 {
			status = http.StatusOK
		}
		s.obs.ObserveRequest(routeOf(r), r.Method, status, time.Since(start))
	}
}
