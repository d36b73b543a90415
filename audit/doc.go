// Package audit owns Anvil's tamper-evident audit log: one append-only file per
// process in which every security-relevant event is one JSON line, each line
// carrying the SHA-256 of the line before it (a hash chain), and the chain head
// signed at start, at intervals and at shutdown by a key in the HSM (a
// checkpoint line). It also owns the verifier that checks such a file with the
// public key alone and names the first bad line.
//
// What it proves, and what it cannot:
//   - An edited, removed, inserted or reordered line breaks the chain at the
//     line after it (each line names the SHA-256 of its predecessor and its own
//     line number), and a signed checkpoint after it can no longer be matched.
//   - Lines appended by hand cannot carry a checkpoint signature. A closed file
//     ends with a signed shutdown checkpoint, and the line after a shutdown
//     checkpoint must be a signed start checkpoint; so a line appended to a
//     closed file is caught, and a file whose tail was cut no longer ends with
//     its shutdown checkpoint.
//   - Lines after the last checkpoint of a process that is still running (or
//     crashed) are not yet signed: the verifier counts them. If the process is
//     running, the next line it writes names the SHA-256 of the line it wrote
//     last, so a cut or an appended line shows there. A crashed run is marked by
//     the next run's start checkpoint, which records whether the file it found
//     ended with a shutdown checkpoint; the verifier lists each such unclean
//     boundary with the number of lines no checkpoint of their own run covers.
//     A cut made while the process is stopped, followed by a restart, looks
//     exactly like a crash there, which is why every checkpoint is also written
//     to the process log (a second place an auditor can compare heads with).
//
// The package imports nothing else of Anvil's: it signs with any crypto.Signer
// (an hsm.Key in production), and packages that record events declare their own
// small interface over Log.Record.
package audit
