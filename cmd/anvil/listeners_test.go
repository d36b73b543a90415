package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
)

// A listener that cannot open is refused with its configuration field named,
// and the listeners opened before it are closed at shutdown, as at the end of
// a run: serve and signer share this, so neither leaves a port behind.
func TestListenersNameTheFieldAndCloseTogether(t *testing.T) {
	l := newListeners(slog.New(slog.NewTextHandler(io.Discard, nil)))
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	addr, err := l.listen("listen", "127.0.0.1:0", adminServer(ok))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr.String() + "/")
	if err != nil {
		t.Fatalf("the open listener does not serve: %v", err)
	}
	resp.Body.Close()

	if _, err := l.listen("pki.listen", addr.String(), pkiServer(ok)); err == nil || !strings.HasPrefix(err.Error(), "pki.listen: ") {
		t.Fatalf("a port in use gave %v, want an error naming pki.listen", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.wait(ctx); err != nil {
		t.Fatalf("wait after the context ended: %v", err)
	}
	l.shutdown()
	if c, err := net.Dial("tcp", addr.String()); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after shutdown", addr)
	}
	l.shutdown() // a second shutdown (the deferred one) is harmless
}
