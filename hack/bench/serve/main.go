// Command serve measures `firedrill serve` with many scheduled scenarios and nothing running:
//
//	start-up time        from exec to "serving HTTP"
//	resident memory      VmRSS after start-up, and after the API was queried
//	idle CPU             utime+stime over -idle (/proc/PID/stat), as a share of one core
//	GET /api/v1/scenarios latency (p50, p90, max) and body size
//
// With -cluster-scenarios N (500 unless 0) it then measures serve --scenarios-from cluster with
// the same N scenarios as Scenario resources in a sandbox API server (cluster.go), beside serve
// reading them from files:
//
//	start to every status    from exec until every Scenario's status is written (target < 30 s)
//	resident memory          VmRSS of both modes and their ratio (target ≤ 1.5×)
//	status writes            Scenario updates per minute while nothing changes (target ~0)
//
// The scenarios are generated: etcd drills with a daily schedule about 12 hours away, so none
// comes due during the measurement. Absolute figures depend on the machine; `make bench` runs it
// after the etcd bench.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/firedrill-dev/firedrill/internal/controlplane"
)

func main() {
	n := flag.Int("scenarios", 1000, "scheduled scenarios to generate")
	idle := flag.Duration("idle", 30*time.Second, "how long to measure idle CPU")
	requests := flag.Int("requests", 50, "GET /api/v1/scenarios requests to time")
	binDir := flag.String("bin", controlplane.FindBinDir(), "directory with the firedrill binary (make build)")
	baseline := flag.Bool("baseline", true, "first measure serve with a single scenario, to show what the scenarios cost")
	clusterN := flag.Int("cluster-scenarios", 500, "then measure serve --scenarios-from cluster with this many Scenario resources in a sandbox API server, beside files (0: skip)")
	clusterIdle := flag.Duration("cluster-idle", time.Minute, "how long to count status writes and idle CPU of serve --scenarios-from cluster")
	flag.Parse()
	// Interrupted, the deferred clean-up still runs: serve is killed and the sandbox stopped.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, *n, *idle, *requests, *binDir, *baseline, *clusterN, *clusterIdle)
	if ctx.Err() != nil {
		err = errors.New("interrupted: serve and the sandbox were stopped, nothing was measured to the end")
	}
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench serve:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, n int, idle time.Duration, requests int, binDir string, baseline bool, clusterN int, clusterIdle time.Duration) error {
	bin := filepath.Join(binDir, "firedrill")
	var base *figures
	if baseline {
		f, err := measure(ctx, spec{n: 1, idle: 5 * time.Second, requests: 5, bin: bin})
		if err != nil {
			return err
		}
		base = &f
	}
	f, err := measure(ctx, spec{n: n, idle: idle, requests: requests, bin: bin})
	if err != nil {
		return err
	}
	f.print(base)
	if clusterN <= 0 {
		return nil
	}
	files := f
	if n != clusterN { // the same scenarios from files, to compare with
		if files, err = measure(ctx, spec{n: clusterN, idle: clusterIdle, requests: requests, bin: bin}); err != nil {
			return err
		}
	}
	cl, err := measureCluster(ctx, spec{n: clusterN, idle: clusterIdle, requests: requests, bin: bin}, binDir)
	if err != nil {
		return err
	}
	printSideBySide(files, cl)
	return nil
}

// spec is what one serve process is measured with.
type spec struct {
	n        int
	idle     time.Duration
	requests int
	bin      string
	cluster  *clusterScenarios // nil: scenario files
}

// figures are what one serve process measured.
type figures struct {
	n                  int
	startup, idleWall  time.Duration
	idleCPU, stop      time.Duration
	rssStart, rssAfter int64 // KiB
	lat                []time.Duration
	size               int
	exit               string
	// With cluster Scenarios only: exec until every status was written, and the Scenario
	// updates seen during the idle measurement.
	allStatuses time.Duration
	idleWrites  int
	writesWall  time.Duration
}

func (f figures) print(base *figures) {
	pct := func(p float64) time.Duration { return f.lat[min(len(f.lat)-1, int(float64(len(f.lat))*p))] }
	fmt.Printf("firedrill serve with %d scheduled scenarios (nothing due)\n", f.n)
	fmt.Printf("  start-up to serving HTTP     %8.2f s\n", f.startup.Seconds())
	fmt.Printf("  resident memory after start  %8.1f MiB", float64(f.rssStart)/1024)
	if base != nil {
		fmt.Printf("  (%.1f MiB with 1 scenario: %.1f KiB per scenario)", float64(base.rssStart)/1024,
			float64(f.rssStart-base.rssStart)/float64(max(1, f.n-base.n)))
	}
	fmt.Println()
	fmt.Printf("  resident memory after API    %8.1f MiB\n", float64(f.rssAfter)/1024)
	fmt.Printf("  idle CPU over %-14s %8.3f %% of one core (%s CPU)\n", f.idleWall.Round(time.Second), 100*f.idleCPU.Seconds()/f.idleWall.Seconds(), f.idleCPU)
	fmt.Printf("  GET /api/v1/scenarios        p50 %s  p90 %s  max %s  (%d requests, %d KiB)\n",
		pct(0.5).Round(time.Microsecond), pct(0.9).Round(time.Microsecond), f.lat[len(f.lat)-1].Round(time.Microsecond), len(f.lat), f.size/1024)
	if base != nil {
		fmt.Printf("                               (p50 %s with 1 scenario)\n", base.lat[len(base.lat)/2].Round(time.Microsecond))
	}
	fmt.Printf("  SIGTERM to exit              %8.2f s (%s)\n", f.stop.Seconds(), f.exit)
}

var servingAddr = regexp.MustCompile(`msg="serving HTTP" addr=(\S+)`)

func measure(ctx context.Context, sp spec) (f figures, err error) {
	n, idle, requests, bin := sp.n, sp.idle, sp.requests, sp.bin
	f.n = n
	if _, err := os.Stat(bin); err != nil {
		return f, fmt.Errorf("%w: build it with 'make build' or point -bin at it", err)
	}
	work, err := os.MkdirTemp("", "firedrill-bench-serve-")
	if err != nil {
		return f, err
	}
	defer os.RemoveAll(work)
	dir := filepath.Join(work, "scenarios")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return f, err
	}
	// Daily, about 12 hours from now: scheduled, but nothing comes due while we measure.
	hour := (time.Now().UTC().Hour() + 12) % 24
	args := []string{"serve", "--listen", "127.0.0.1:0", "--history", filepath.Join(work, "history.db"), "--janitor-interval", "0"}
	if sp.cluster == nil {
		for i := range n {
			name, body := scenario(i, hour)
			if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(body), 0o644); err != nil {
				return f, err
			}
		}
		args = append(args, "--scenarios", dir, "--kubeconfig", filepath.Join(work, "none"))
	} else {
		if err := sp.cluster.create(ctx, n, hour); err != nil {
			return f, err
		}
		args = append(args, "--scenarios-from", "cluster", "--scenarios-namespace", sp.cluster.namespace, "--kubeconfig", sp.cluster.kubeconfig)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "FIREDRILL_TOKEN=", "FIREDRILL_SLACK_WEBHOOK=", "FIREDRILL_SCENARIOS=")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return f, err
	}
	var logs bytes.Buffer
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return f, err
	}
	defer cmd.Process.Kill()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
			if m := servingAddr.FindStringSubmatch(sc.Text()); m != nil && !sent {
				addr <- m[1]
				sent = true
			}
		}
		if !sent {
			close(addr)
		}
	}()
	var base string
	select {
	case a, ok := <-addr:
		if !ok {
			return f, fmt.Errorf("serve exited before serving:\n%s", logs.String())
		}
		base = "http://" + a
	case <-time.After(5 * time.Minute):
		return f, fmt.Errorf("serve did not start within 5 minutes")
	case <-ctx.Done():
		return f, ctx.Err()
	}
	startup := time.Since(start)
	pid := cmd.Process.Pid
	var idleWrites func() (int, time.Duration, error)
	if sp.cluster != nil {
		// Start-up of a cluster source ends when every Scenario shows what serve made of it.
		if err := sp.cluster.waitStatuses(ctx, n, 5*time.Minute); err != nil {
			return f, fmt.Errorf("%w\nserve's log:\n%s", err, logs.String())
		}
		f.allStatuses = time.Since(start)
		if idleWrites, err = sp.cluster.countWrites(ctx); err != nil {
			return f, err
		}
	}
	if err := sleep(ctx, 2*time.Second); err != nil { // let start-up garbage be collected before reading RSS
		return f, err
	}
	rssStart, err := rssKiB(pid)
	if err != nil {
		return f, err
	}

	// Idle CPU: nothing is due, nobody asks.
	t0, err := cpuTicks(pid)
	if err != nil {
		return f, err
	}
	w0 := time.Now()
	if err := sleep(ctx, idle); err != nil {
		return f, err
	}
	t1, err := cpuTicks(pid)
	if err != nil {
		return f, err
	}
	wall := time.Since(w0)
	if idleWrites != nil {
		if f.idleWrites, f.writesWall, err = idleWrites(); err != nil {
			return f, err
		}
	}
	cpu := time.Duration(t1-t0) * time.Second / time.Duration(clockTicks)

	// API latency.
	client := &http.Client{Timeout: time.Minute}
	var lat []time.Duration
	size := 0
	for range requests {
		s := time.Now()
		resp, err := client.Get(base + "/api/v1/scenarios")
		if err != nil {
			return f, err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return f, fmt.Errorf("GET /api/v1/scenarios: %d %s", resp.StatusCode, b)
		}
		lat = append(lat, time.Since(s))
		size = len(b)
	}
	if got := bytes.Count(mustGet(client, base+"/api/v1/scenarios"), []byte(`"name"`)); got < n {
		return f, fmt.Errorf("GET /api/v1/scenarios lists %d scenarios, want %d", got, n)
	}
	rssAfter, _ := rssKiB(pid)

	cmd.Process.Signal(syscall.SIGTERM)
	stopStart := time.Now()
	waitErr := cmd.Wait()
	stop := time.Since(stopStart)

	slices.Sort(lat)
	f.startup, f.rssStart, f.rssAfter = startup, rssStart, rssAfter
	f.idleWall, f.idleCPU, f.stop = wall, cpu, stop
	f.lat, f.size, f.exit = lat, size, orOK(waitErr)
	return f, nil
}

// scenario is the i-th generated scenario, scheduled daily at hour: its name and its file.
func scenario(i, hour int) (name, doc string) {
	name = fmt.Sprintf("bench-%04d", i)
	return name, fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: %s, labels: {team: team-%d}}
spec:
  schedule: "%d %d * * *"
  objectives: {rto: 10m, rpo: 25h}
  backup: {etcd: {take: {endpoints: ["http://127.0.0.1:1"]}}}
  restore: {scratchEtcd: {}}
  checks:
    - {name: snapshot integrity, etcdIntegrity: {}}
    - {name: every object decodes, etcdObjectsDecode: {}}
`, name, i%10, i%60, hour)
}

// sleep waits d, or less when ctx ends first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func mustGet(c *http.Client, url string) []byte {
	resp, err := c.Get(url)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}

func orOK(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times; 100 on every Linux that matters.
const clockTicks = 100

// cpuTicks returns utime+stime (fields 14 and 15) of /proc/PID/stat.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return u + s, nil
}

func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}
