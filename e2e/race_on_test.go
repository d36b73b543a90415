//go:build race

package e2e

// raceEnabled: the tests run under the race detector, so the server they
// start is built with it too, and a data race in anvil serve fails the run.
const raceEnabled = true
