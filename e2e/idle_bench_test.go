package e2e

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	benchIdleFor     = flag.Duration("idle-for", 30*time.Second, "how long BenchmarkServeIdle watches an idle server")
	benchIdleProfile = flag.String("idle-profile", "", "write a CPU profile of the idle server (BenchmarkServeIdle) to this file")
)

// BenchmarkServeIdle measures the CPU an `anvil serve` with the bench
// configuration spends while nobody asks it anything: its background tickers
// (nonce and lease upkeep, CRL scheduler, HSM health, metrics, database
// maintenance). Every millisecond per second here is a fixed cost that the
// certificates of a slow hour pay for: at 80 certificates/s, 1 ms/s idle is
// 0.0125 ms per certificate.
//
//	go test -run '^$' -bench ServeIdle -benchtime 1x ./e2e/ [-idle-for 30s] [-idle-profile /tmp/idle.prof]
func BenchmarkServeIdle(b *testing.B) {
	ca := NewCA(b)
	// Past the start-up (key lookups, test signatures, first CRLs).
	time.Sleep(3 * time.Second)
	var prof chan struct{}
	if *benchIdleProfile != "" {
		prof = make(chan struct{})
		go func() {
			defer close(prof)
			url := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", ca.AdminPort, int(benchIdleFor.Seconds()))
			resp, err := http.Get(url)
			if err != nil {
				b.Errorf("profile: %v", err)
				return
			}
			defer resp.Body.Close()
			f, err := os.Create(*benchIdleProfile)
			if err != nil {
				b.Errorf("profile: %v", err)
				return
			}
			defer f.Close()
			io.Copy(f, resp.Body)
		}()
	}
	before := processCPU(b, ca.Pid())
	time.Sleep(*benchIdleFor)
	used := processCPU(b, ca.Pid()) - before
	if prof != nil {
		<-prof
	}
	b.ReportMetric(float64(used.Microseconds())/1000/benchIdleFor.Seconds(), "idle_cpu_ms/s")
	b.ReportMetric(0, "ns/op")
}

// contextSwitches sums the voluntary context switches of every thread of a
// process: each is a thread going to sleep (a futex wait, a sysmon nap, a
// blocking read), to be woken again. Involuntary ones measure the machine's
// other load, not the server. Those of threads that have exited are lost; the
// Go runtime rarely ends a thread.
func contextSwitches(pid int) (n int64) {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // the thread ended
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
				c, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += c
			}
		}
	}
	return n
}
