package api

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gorilla/mux"
)

type seen struct {
	route, method string
	status        int
}

type recorder struct{ got []seen }

func (r *recorder) ObserveRequest(route, method string, status int, _ time.Duration) {
	r.got = append(r.got, seen{route, method, status})
}
func (r *recorder) ObserveProblem(string) {}

// Requests are labelled by the route template, never by the path a client
// sent, and with the status the handler wrote.
func TestObserveLabelsRouteTemplates(t *testing.T) {
	rec := &recorder{}
	s := &Server{obs: rec}
	wrap := func(status int) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w, done := s.observe(w, r)
			defer done()
			if status != 0 {
				w.WriteHeader(status)
			}
			w.Write([]byte("x"))
		})
	}
	r := mux.NewRouter()
	r.Handle(orderPath+"{id}/finalize", wrap(http.StatusCreated)).Methods(http.MethodPost)
	r.Handle(directoryPath, wrap(0)).Methods(http.MethodGet)
	r.NotFoundHandler = wrap(http.StatusNotFound)
	for _, req := range []*http.Request{
		httptest.NewRequest(http.MethodPost, "/acme/order/secret-order-id/finalize", nil),
		httptest.NewRequest(http.MethodGet, "/directory", nil),
		httptest.NewRequest(http.MethodGet, "/www.example.com", nil),
	} {
		r.ServeHTTP(httptest.NewRecorder(), req)
	}
	want := []seen{
		{"/acme/order/{id}/finalize", "POST", 201},
		{"/directory", "GET", 200},
		{unmatchedRoute, "GET", 404},
	}
	if len(rec.got) != len(want) {
		t.Fatalf("observed %v, want %v", rec.got, want)
	}
	for i := range want {
		if rec.got[i] != want[i] {
			t.Errorf("request %d observed as %+v, want %+v", i, rec.got[i], want[i])
		}
	}
}
