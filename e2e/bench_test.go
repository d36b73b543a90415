package e2e

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-acme/lego/v5/certcrypto"
	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/lego"
	legolog "github.com/go-acme/lego/v5/log"

	"github.com/anvil-pki/anvil/storage/postgres/pgtest"
)

var (
	benchFlows   = flag.Int("flows", 600, "complete ACME flows per concurrency level in BenchmarkACMEFlows")
	benchProfile = flag.String("server-profile", "", "write a 5 s CPU profile of the server during the concurrency=16 run to this file")
)

// captureProfile saves a CPU profile of the running server from its admin
// listener.
func captureProfile(b testing.TB, ca *CA, path string) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=5", ca.AdminPort))
	if err != nil {
		b.Errorf("profile: %v", err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		b.Errorf("profile: %v", err)
		return
	}
	defer f.Close()
	io.Copy(f, resp.Body)
}

// BenchmarkACMEFlows is `make bench-acme`: lego clients run complete flows (new
// order, http-01 validated for real over loopback, finalize with a fresh P-256
// key, download) against a real `anvil serve` on SoftHSM2 and SQLite, at
// concurrency 1, 4 and 16. It reports certificates per second, p50/p99 flow
// latency, and the CPU per certificate of the server and of this process (the
// clients) from their utime+stime.
// Run it with -benchtime 1x: each level runs -flows flows, whatever b.N is.
func BenchmarkACMEFlows(b *testing.B) {
	legolog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	ca := NewCA(b)
	for _, conc := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			clients := make([]*lego.Client, conc)
			for i := range clients {
				c, u := legoClient(b, ca, newKey(b), func(cfg *lego.Config) {
					// lego paces its authorization fetches for Let's Encrypt's
					// rate limits (18 requests/s: 55 ms per authorization); a
					// load generator for our own CA lifts that.
					cfg.Certificate.OverallRequestLimit = 1000
				})
				register(b, c, u)
				clients[i] = c
			}
			if *benchProfile != "" && conc == 16 {
				go func() {
					// Past the warm-up, into the measured flows.
					time.Sleep(time.Second)
					captureProfile(b, ca, *benchProfile)
				}()
			}
			measureFlows(b, clients, fmt.Sprintf("c%d", conc), ca.Pid())
		})
	}
}

// measureFlows runs -flows complete flows spread over clients (one goroutine
// each), after one unmeasured warm-up flow per client, and reports
// certificates per second, p50/p99 flow latency and the CPU the server
// processes (pids) spent per certificate.
func measureFlows(b *testing.B, clients []*lego.Client, label string, pids ...int) {
	for i, c := range clients {
		obtain(b, c, fmt.Sprintf("warm-%s-%d.bench.anvil-e2e.com", label, i))
	}
	var next atomic.Int64
	lat := make([]time.Duration, *benchFlows)
	cpu := func() (d time.Duration) {
		for _, pid := range pids {
			d += processCPU(b, pid)
		}
		return d
	}
	cpuBefore, clientBefore := cpu(), processCPU(b, os.Getpid())
	start := time.Now()
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(*benchFlows) {
					return
				}
				t0 := time.Now()
				obtain(b, c, fmt.Sprintf("f-%s-%d.bench.anvil-e2e.com", label, i))
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	used, clientUsed := cpu()-cpuBefore, processCPU(b, os.Getpid())-clientBefore
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	n := float64(*benchFlows)
	b.ReportMetric(n/elapsed.Seconds(), "certs/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99_ms")
	b.ReportMetric(float64(used.Microseconds())/1000/n, "server_cpu_ms/cert")
	// The load generator's own share of the cores: lego, the http-01 and DNS
	// servers the validations reach.
	b.ReportMetric(float64(clientUsed.Microseconds())/1000/n, "client_cpu_ms/cert")
	b.ReportMetric(0, "ns/op")
}

func obtain(b testing.TB, c *lego.Client, name string) {
	_, err := c.Certificate.Obtain(context.Background(), certificate.ObtainRequest{Domains: []string{name}, Bundle: true, KeyType: certcrypto.EC256})
	if err != nil {
		b.Errorf("obtain %s: %v", name, err)
	}
}

// processCPU reads a process's user+system CPU time from /proc/PID/stat.
func processCPU(t testing.TB, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The command name may hold spaces; the fields after it start at the last ")".
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clkTck
}

// BenchmarkScaleOut is `make bench-scale`: the same lego flows at concurrency
// 16 against four deployments on this one machine — `anvil serve` alone on
// SQLite, alone on PostgreSQL, and one or two front ends before an `anvil
// signer`, all on PostgreSQL. server_cpu_ms/cert sums every Anvil process
// (front ends and signer; PostgreSQL's own CPU is not counted).
func BenchmarkScaleOut(b *testing.B) {
	legolog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	const conc = 16
	limitless := func(cfg *lego.Config) { cfg.Certificate.OverallRequestLimit = 1000 }
	single := func(b *testing.B, opts ...CAOption) {
		ca := NewCA(b, opts...)
		clients := make([]*lego.Client, conc)
		for i := range clients {
			c, u := legoClient(b, ca, newKey(b), limitless)
			register(b, c, u)
			clients[i] = c
		}
		measureFlows(b, clients, "single", ca.Pid())
	}
	b.Run("sqlite/serve", func(b *testing.B) { single(b) })
	b.Run("postgres/serve", func(b *testing.B) {
		single(b, WithDatabase("driver: postgres\ndsn: "+strconv.Quote(pgtest.Start(b))))
	})
	for _, fronts := range []int{1, 2} {
		// No '=' in the name: the temp dir carries it, and SoftHSM2's
		// config parser splits tokendir's line on every '='.
		b.Run(fmt.Sprintf("postgres/signer+%dfronts", fronts), func(b *testing.B) {
			c := newCluster(b, fronts)
			clients := make([]*lego.Client, conc)
			for i := range clients {
				clients[i] = c.legoSpread(b)
			}
			pids := []int{c.signer.cmd.Process.Pid}
			for _, f := range c.fronts {
				pids = append(pids, f.cmd.Process.Pid)
			}
			measureFlows(b, clients, fmt.Sprintf("fronts%d", fronts), pids...)
		})
	}
}
