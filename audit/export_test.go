package audit

// crash ends the log as a killed process would: no shutdown checkpoint, the
// file descriptor (and its lock) simply gone.
func (l *Log) crash() {
	close(l.stop)
	<-l.done
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.f.Close()
}

// Crash is crash, for tests.
func (l *Log) Crash() { l.crash() }
