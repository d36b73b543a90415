package hsm

// HoldSessionForTest takes one signing session slot, as a long sign would, and
// returns the function that gives it back.
func HoldSessionForTest(t *Token) func() {
	t.sem <- struct{}{}
	return func() { <-t.sem }
}

// VerifyForTest is the verification SignContext does on every signature.
var VerifyForTest = verify
