package records

// NilIfEmpty returns nil for an empty slice and s otherwise. Both stores keep
// an empty list or byte string as NULL, so nil and empty alike read back as
// nil: callers test len, a nil Error means "no problem document", and the two
// databases cannot disagree about emptiness.
func NilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}
