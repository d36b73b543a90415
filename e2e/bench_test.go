package e2e

import (
	"context"
	"errors"
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
	benchFlows     = flag.Int("flows", 600, "complete ACME flows per concurrency level in BenchmarkACMEFlows")
	benchProfile   = flag.String("server-profile", "", "write a CPU profile of the server during the -server-profile-conc run to this file")
	benchProfConc  = flag.Int("server-profile-conc", 16, "the concurrency level -server-profile profiles")
	benchProfSecs  = flag.Int("server-profile-seconds", 5, "how long -server-profile profiles")
	benchPebble    = flag.String("pebble", "", "path of a pebble binary: BenchmarkACMEFlows runs the same load against it, alternating with Anvil")
	benchPebbleEnv = flag.String("pebble-env", "", "space-separated NAME=VALUE settings added to Pebble's environment, e.g. PEBBLE_AUTHZREUSE=0")
	// A flow takes milliseconds; one that takes a second is a stall, not a
	// data point: lego, when a challenge is not valid yet in the server's
	// answer to its POST and no Retry-After says otherwise, polls again after
	// 5 s (±50%), which is what a Pebble whose VA loses that race shows.
	benchStallAfter  = flag.Duration("stall-after", time.Second, "a flow taking longer than this is a stall")
	benchFlowTimeout = flag.Duration("flow-timeout", 10*time.Second, "give up a flow after this long: the server stalled")
)

// captureProfile saves a CPU profile of the running server from its admin
// listener.
func captureProfile(b testing.TB, ca *CA, path string) {
	profileTo(b, ca.AdminPort, *benchProfSecs, path)
}

// profileTo saves a CPU profile of seconds of the Anvil process whose admin
// listener is on port.
func profileTo(b testing.TB, port, seconds int, path string) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", port, seconds))
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
//
// With -pebble=PATH (the Makefile go-installs the pinned release) it runs the
// same load against Pebble too, alternating with Anvil at each concurrency
// level so that both see the same machine load, and prints a side-by-side
// table with the ratios. A Pebble run that stalls is reported as a stall, not
// averaged in.
// Run it with -benchtime 1x: each level runs -flows flows, whatever b.N is.
func BenchmarkACMEFlows(b *testing.B) {
	legolog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	ca := NewCA(b)
	var peb *pebbleProc
	if *benchPebble != "" {
		peb = startPebble(b, *benchPebble)
	}
	var rows []benchRow
	for _, conc := range []int{1, 4, 16} {
		row := benchRow{conc: conc}
		run := func(name string, target *CA, pid int, res **benchResult) {
			b.Run(fmt.Sprintf("concurrency=%d/%s", conc, name), func(b *testing.B) {
				clients := make([]*lego.Client, conc)
				for i := range clients {
					c, err := benchClient(b, target)
					if err != nil && target == ca {
						b.Fatal(err)
					}
					if err != nil {
						r := benchResult{stall: err.Error(), hung: err.Error()}
						r.report(b)
						*res = &r
						return
					}
					clients[i] = c
				}
				if *benchProfile != "" && conc == *benchProfConc && target == ca {
					go func() {
						// Past the warm-up, into the measured flows.
						time.Sleep(time.Second)
						captureProfile(b, ca, *benchProfile)
					}()
				}
				// Anvil must not stall or fail: that is a bug. Pebble's stalls
				// are a measured outcome.
				r := runFlows(b, clients, fmt.Sprintf("%s%d", name, conc), target == ca, pid)
				r.report(b)
				*res = &r
			})
		}
		run("anvil", ca, ca.Pid(), &row.anvil)
		if peb != nil {
			run("pebble", peb.CA, peb.Pid(), &row.pebble)
			if row.pebble != nil && row.pebble.hung != "" {
				peb.dumpAndRestart(b)
			}
		}
		rows = append(rows, row)
	}
	if peb != nil {
		printSideBySide(os.Stdout, rows)
	}
}

// benchResult is one measured run of -flows flows.
type benchResult struct {
	flows     int           // flows finished (with a certificate)
	errors    int           // flows that ended in an error
	elapsed   time.Duration // wall time of the measured flows
	p50, p99  time.Duration
	serverCPU time.Duration // CPU of the server processes over the run
	clientCPU time.Duration // CPU of this process over the run
	serverCS  int64         // context switches of the server processes' threads over the run
	stalls    int           // flows slower than -stall-after
	hung      string        // a flow that hit -flow-timeout
	stall     string        // why the run counts as stalled; empty if it did not
}

func (r benchResult) certsPerSec() float64 { return float64(r.flows) / r.elapsed.Seconds() }
func (r benchResult) serverCPUPerCert() float64 {
	return float64(r.serverCPU.Microseconds()) / 1000 / float64(r.flows)
}
func (r benchResult) clientCPUPerCert() float64 {
	return float64(r.clientCPU.Microseconds()) / 1000 / float64(r.flows)
}

func (r benchResult) report(b *testing.B) {
	if r.stall != "" {
		b.Logf("STALLED: %s (%d flows finished, %d errors; p50 of those under the limit %s)", r.stall, r.flows, r.errors, r.p50)
		b.ReportMetric(float64(r.stalls), "stalled_flows")
		b.ReportMetric(0, "ns/op")
		return
	}
	b.ReportMetric(r.certsPerSec(), "certs/s")
	b.ReportMetric(float64(r.p50.Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(r.p99.Microseconds())/1000, "p99_ms")
	b.ReportMetric(r.serverCPUPerCert(), "server_cpu_ms/cert")
	// Each switch is a thread put to sleep or woken: a cost that CPU time on a
	// shared machine measures with much noise, counted exactly.
	b.ReportMetric(float64(r.serverCS)/float64(r.flows), "server_ctxsw/cert")
	// The load generator's own share of the cores: lego, the http-01 and DNS
	// servers the validations reach.
	b.ReportMetric(r.clientCPUPerCert(), "client_cpu_ms/cert")
	if r.errors > 0 {
		b.ReportMetric(float64(r.errors), "errors")
	}
	b.ReportMetric(0, "ns/op")
}

// measureFlows runs -flows flows (see runFlows), requires every one to succeed,
// and reports the metrics.
func measureFlows(b *testing.B, clients []*lego.Client, label string, pids ...int) {
	r := runFlows(b, clients, label, true, pids...)
	r.report(b)
}

// runFlows runs -flows complete flows spread over clients (one goroutine
// each), after one unmeasured warm-up flow per client, and measures
// certificates per second, p50/p99 flow latency and the CPU the server
// processes (pids) spent.
//
// A run stalls when a flow takes longer than -stall-after, or when the
// throughput of its last quarter of flows falls under a quarter of its first
// quarter's (a collapse). After max(5, 5%) slow flows, or one that did not
// finish within -flow-timeout (the server stopped answering), no new flow
// starts: the run's numbers would only measure the stalls. With strict, a failed flow
// fails the benchmark.
func runFlows(b *testing.B, clients []*lego.Client, label string, strict bool, pids ...int) benchResult {
	var res benchResult
	for i, c := range clients {
		if err := obtainCtx(c, fmt.Sprintf("warm-%s-%d.bench.anvil-e2e.com", label, i), *benchFlowTimeout); err != nil {
			res.stall = fmt.Sprintf("warm-up flow: %v", err)
			if errors.Is(err, context.DeadlineExceeded) {
				res.hung = res.stall
			}
			if strict {
				b.Fatal(res.stall)
			}
			return res
		}
	}
	var (
		next    atomic.Int64
		stopped atomic.Bool
		mu      sync.Mutex
		errs    []string
	)
	// Past a few stalls the run says no more than it has: stop it rather
	// than wait seconds per flow.
	maxStalls := max(5, *benchFlows/20)
	lat := make([]time.Duration, *benchFlows)
	ends := make([]time.Time, *benchFlows) // when each flow finished
	cpu := func() (d time.Duration) {
		for _, pid := range pids {
			d += processCPU(b, pid)
		}
		return d
	}
	cs := func() (n int64) {
		for _, pid := range pids {
			n += contextSwitches(pid)
		}
		return n
	}
	cpuBefore, clientBefore, csBefore := cpu(), processCPU(b, os.Getpid()), cs()
	start := time.Now()
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stopped.Load() {
				i := next.Add(1) - 1
				if i >= int64(*benchFlows) {
					return
				}
				t0 := time.Now()
				err := obtainCtx(c, fmt.Sprintf("f-%s-%d.bench.anvil-e2e.com", label, i), *benchFlowTimeout)
				d := time.Since(t0)
				mu.Lock()
				switch {
				case errors.Is(err, context.DeadlineExceeded):
					// The server stopped answering: nothing more to measure.
					res.stalls++
					if res.hung == "" {
						res.hung = fmt.Sprintf("flow %d did not finish within %s", i, *benchFlowTimeout)
					}
					stopped.Store(true)
				case d > *benchStallAfter:
					res.stalls++
					if res.stalls >= maxStalls {
						stopped.Store(true)
					}
				case err != nil:
					res.errors++
					errs = append(errs, err.Error())
				default:
					lat[i], ends[i] = d, time.Now()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.serverCPU, res.clientCPU, res.serverCS = cpu()-cpuBefore, processCPU(b, os.Getpid())-clientBefore, cs()-csBefore
	var done []time.Duration
	var finished []time.Time
	for i := range lat {
		if lat[i] > 0 {
			done = append(done, lat[i])
			finished = append(finished, ends[i])
		}
	}
	res.flows = len(done)
	switch {
	case res.hung != "":
		res.stall = res.hung
	case res.stalls > 0:
		res.stall = fmt.Sprintf("%d flows took over %s (run stopped at %d)", res.stalls, *benchStallAfter, maxStalls)
	}
	if strict && res.errors > 0 {
		b.Fatalf("%d flows failed (first: %v)", res.errors, errs)
	}
	for i, e := range errs {
		if i == 3 {
			break
		}
		b.Logf("flow error: %s", e)
	}
	if len(done) == 0 {
		if res.stall == "" {
			res.stall = "no flow finished"
		}
		return res
	}
	sort.Slice(done, func(i, j int) bool { return done[i] < done[j] })
	res.p50, res.p99 = done[len(done)/2], done[len(done)*99/100]
	if res.stall == "" {
		res.stall = collapsed(start, finished)
	}
	return res
}

// collapsed says whether the throughput fell during a run: the last quarter
// of the flows (by finish time) taking over four times as long as the first.
func collapsed(start time.Time, finished []time.Time) string {
	if len(finished) < 40 {
		return ""
	}
	sort.Slice(finished, func(i, j int) bool { return finished[i].Before(finished[j]) })
	q := len(finished) / 4
	first := finished[q-1].Sub(start)
	last := finished[len(finished)-1].Sub(finished[len(finished)-1-q])
	if last > 4*first {
		return fmt.Sprintf("throughput collapsed: the first %d flows took %s, the last %d %s", q, first.Round(time.Millisecond), q, last.Round(time.Millisecond))
	}
	return ""
}

// obtainCtx runs one flow for name, giving up after timeout.
func obtainCtx(c *lego.Client, name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := c.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{name}, Bundle: true, KeyType: certcrypto.EC256})
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("obtain %s: %w", name, ctx.Err())
	}
	return err
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
