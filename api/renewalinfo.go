package api

import (
	"net/http"
	"strings"
	"time"
)

// renewalInfo answers RFC 9773's GET: when to renew a certificate.
func (s *Server) renewalInfo(w http.ResponseWriter, r *http.Request) error {
	id := strings.TrimPrefix(r.URL.Path, renewalInfoPath)
	info, err := s.cfg.Core.RenewalInfo(r.Context(), id)
	if err != nil {
		return err
	}
	w.Header().Set("Retry-After", strconvSeconds(info.RetryAfter))
	type window struct {
		Start string `json:"start"`
		End   string `json:"end"`
	}
	return writeJSON(w, http.StatusOK, struct {
		SuggestedWindow window `json:"suggestedWindow"`
	}{window{info.Start.UTC().Format(time.RFC3339), info.End.UTC().Format(time.RFC3339)}})
}
