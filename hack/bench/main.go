// Command bench runs firedrill side by side with the etcd tools it replaces, the etcd operations
// on a sandbox etcd holding at least -size of Kubernetes objects, and prints the ratios:
//
//	firedrill version         vs  etcdctl version           (start-up: target ≤ 2× time)
//	firedrill snapshot etcd   vs  etcdctl snapshot save     (target ≤ 1.1× time, ≤ 1.2× peak RSS)
//	firedrill restore etcd    vs  etcdutl snapshot restore  (target ≤ 1.1×)
//	etcdObjectsDecode check   vs  etcdutl snapshot status   (target ≤ 3×)
//
// Absolute times mean little on shared machines; the ratios, measured in one run with the tools
// alternating, are the result. `make bench` runs it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/client-go/kubernetes/scheme"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/scenarios"
	"github.com/firedrill-dev/firedrill/snapshot/etcd"
	"github.com/firedrill-dev/firedrill/verify"
)

func main() {
	size := flag.Int64("size", 1<<30, "bytes of objects to put into etcd before measuring")
	rounds := flag.Int("rounds", 3, "measurements per tool and operation")
	binDir := flag.String("bin", sandbox.FindBinDir(), "directory with firedrill, etcdctl and etcdutl")
	endpoint := flag.String("endpoint", "", "use this etcd instead of starting a sandbox; it is filled only up to -size")
	only := flag.String("only", "", "run only these operations, comma-separated: startup, snapshot, restore, decode (restore needs snapshot)")
	startupRounds := flag.Int("startup-rounds", 30, "measurements per tool of start-up (version)")
	flag.Parse()
	if err := run(*size, *rounds, *startupRounds, *binDir, *endpoint, *only); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type measure struct {
	op, peer, ours string
	peerR, oursR   []result
	target         string
}

// result is one run of one tool.
type result struct {
	wall, cpu time.Duration // cpu: user + system time of the process
	rssKiB    int64         // peak resident memory; 0 when measured in this process
}

func run(size int64, rounds, startupRounds int, binDir, endpoint, only string) error {
	ctx := context.Background()
	want := func(op string) bool { return only == "" || slices.Contains(strings.Split(only, ","), op) }
	bin := func(name string) string { return filepath.Join(binDir, name) }
	work, err := os.MkdirTemp("", "firedrill-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	t, err := buildTimer(work)
	if err != nil {
		return err
	}
	// Start-up first, on a quiet machine: before the sandbox runs and fills etcd.
	start := &measure{op: "start-up", peer: "etcdctl version", ours: "firedrill version", target: "≤ 2×"}
	if want("startup") {
		fmt.Printf("start-up: %d rounds of version ...\n", startupRounds)
		for i := range startupRounds {
			if err := start.pair(t, i, []string{bin("etcdctl"), "version"}, []string{bin("firedrill"), "version"}); err != nil {
				return err
			}
		}
	}
	snap := &measure{op: "snapshot", peer: "etcdctl snapshot save", ours: "firedrill snapshot etcd", target: "≤ 1.1×, RSS ≤ 1.2×"}
	rest := &measure{op: "restore", peer: "etcdutl snapshot restore", ours: "firedrill restore etcd", target: "≤ 1.1×"}
	dec := &measure{op: "decode all", peer: "etcdutl snapshot status", ours: "etcdObjectsDecode check", target: "≤ 3×"}
	if !want("snapshot") && !want("restore") && !want("decode") {
		return report(nil, []*measure{start}, 0, startupRounds)
	}

	ep := endpoint
	if ep == "" {
		fmt.Printf("starting a sandbox etcd in %s ...\n", work)
		sb, err := sandbox.Start(ctx, sandbox.Options{Dir: filepath.Join(work, "sandbox"), BinDir: binDir})
		if err != nil {
			return err
		}
		defer sb.Stop()
		ep = sb.EtcdEndpoints()[0]
	}
	fmt.Printf("filling %s with %d MiB of ConfigMaps ...\n", ep, size>>20)
	n, err := fill(ctx, ep, size)
	if err != nil {
		return err
	}
	fmt.Printf("%d objects in etcd\n", n)

	file := filepath.Join(work, "bench.db")
	for i := range rounds {
		fmt.Printf("round %d/%d\n", i+1, rounds)
		p1, p2 := filepath.Join(work, fmt.Sprintf("ctl-%d.db", i)), filepath.Join(work, fmt.Sprintf("fd-%d.db", i))
		if want("snapshot") || i == 0 {
			if err := snap.pair(t, i, []string{bin("etcdctl"), "--endpoints", ep, "snapshot", "save", p1},
				[]string{bin("firedrill"), "snapshot", "etcd", "--endpoints", ep, "--out", p2}); err != nil {
				return err
			}
			os.Rename(p2, file)
			os.Remove(p1)
		}
		if !want("restore") {
			continue
		}
		d1, d2 := filepath.Join(work, fmt.Sprintf("utl-%d", i)), filepath.Join(work, fmt.Sprintf("fdr-%d", i))
		if err := rest.pair(t, i, []string{bin("etcdutl"), "snapshot", "restore", file, "--data-dir", d1, "--bump-revision", "1000000000", "--mark-compacted"},
			[]string{bin("firedrill"), "restore", "etcd", file, "--data-dir", d2, "--bump-revision", "1000000000", "--mark-compacted"}); err != nil {
			return err
		}
		os.RemoveAll(d1)
		os.RemoveAll(d2)
	}
	if want("decode") {
		if err := decode(ctx, t, work, file, rounds, bin, dec); err != nil {
			return err
		}
	}

	if !want("snapshot") {
		snap.oursR, snap.peerR = nil, nil // taken only as the file to restore
	}
	st, _ := os.Stat(file)
	return report(st, []*measure{start, snap, rest, dec}, n, rounds)
}

// report prints the table of ratios and every round of the etcd operations.
func report(snapshot os.FileInfo, ms []*measure, objects, rounds int) error {
	fmt.Println()
	if snapshot != nil {
		fmt.Printf("snapshot size %d MiB, %d objects, %d rounds; ", snapshot.Size()>>20, objects, rounds)
	}
	fmt.Printf("medians; CPU is user+system time; RSS is the peak resident memory of any round\n\n")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "operation\tpeer\tfiredrill\tratio\tpeer CPU\tfiredrill CPU\tpeer RSS\tfiredrill RSS\tRSS ratio\ttarget")
	for _, m := range ms {
		if len(m.oursR) == 0 {
			continue
		}
		pw, ow := median(m.peerR, wall), median(m.oursR, wall)
		pr, or := peakRSS(m.peerR), peakRSS(m.oursR)
		rssRatio := "-"
		if pr > 0 && or > 0 {
			rssRatio = fmt.Sprintf("%.2f×", float64(or)/float64(pr))
		}
		fmt.Fprintf(tw, "%s\t%s %s\t%s %s\t%.2f×\t%s\t%s\t%s\t%s\t%s\t%s\n", m.op, m.peer, pw.Round(time.Millisecond), m.ours, ow.Round(time.Millisecond),
			float64(ow)/float64(pw), median(m.peerR, cpu).Round(time.Millisecond), median(m.oursR, cpu).Round(time.Millisecond),
			mib(pr), mib(or), rssRatio, m.target)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if snapshot == nil {
		return nil
	}
	fmt.Println("\nevery round (wall/CPU, the one that ran first marked *):")
	for _, m := range ms[1:] {
		for i := range m.oursR {
			p, o, mp, mo := m.peerR[i], m.oursR[i], "*", ""
			if i%2 == 1 {
				mp, mo = mo, mp
			}
			fmt.Printf("  %-10s round %d  peer %s/%s%s  firedrill %s/%s%s\n", m.op, i+1, p.wall.Round(time.Millisecond), p.cpu.Round(time.Millisecond), mp,
				o.wall.Round(time.Millisecond), o.cpu.Round(time.Millisecond), mo)
		}
	}
	return nil
}

// decode measures the etcdObjectsDecode check against etcdutl's status, which reads every key too.
func decode(ctx context.Context, t timer, work, file string, rounds int, bin func(string) string, dec *measure) error {
	// The decode check reads a scratch etcd holding the restored snapshot, as in a drill.
	data := filepath.Join(work, "scratch")
	if err := etcd.Restore(ctx, etcd.RestoreOptions{SnapshotPath: file, DataDir: data, Name: "bench"}); err != nil {
		return err
	}
	scratch, err := etcd.StartScratch(ctx, data, "bench")
	if err != nil {
		return err
	}
	defer scratch.Close()
	checks, err := verify.NewEtcdChecks("bench", []scenarios.Check{{Name: "decode", EtcdObjectsDecode: &scenarios.EtcdObjectsDecodeCheck{}}})
	if err != nil {
		return err
	}
	rep, err := etcd.Inspect(file)
	if err != nil {
		return err
	}
	// As in a drill: the check reads the snapshot file that was inspected and restored.
	target := &verify.EtcdTarget{Restored: scratch.Client(), Snapshot: etcd.Report{
		Path: file, SizeBytes: rep.SizeBytes, SHA256: rep.SHA256, HasHash: rep.HasHash, HashMatches: rep.HashMatches,
		Readable: rep.Readable, ReadError: rep.ReadError, Revision: rep.Revision, TotalKeys: rep.TotalKeys, Version: rep.Version}}
	for i := range rounds {
		peer := func() (result, error) {
			return t.run([]string{bin("etcdutl"), "snapshot", "status", file, "-w", "json"})
		}
		ours := func() (result, error) {
			t0, c0 := time.Now(), selfCPU()
			o := checks[0].Run(ctx, target)
			if o.Status != verify.StatusPassed {
				return result{}, fmt.Errorf("decode check: %s: %s", o.Status, o.Message)
			}
			return result{wall: time.Since(t0), cpu: selfCPU() - c0}, nil
		}
		if err := dec.pairFunc(i, peer, ours); err != nil {
			return err
		}
	}
	return nil
}

// pair measures both commands once, alternating which goes first so neither always gets the
// warmer page cache.
func (m *measure) pair(t timer, round int, peer, ours []string) error {
	return m.pairFunc(round, func() (result, error) { return t.run(peer) }, func() (result, error) { return t.run(ours) })
}

func (m *measure) pairFunc(round int, peer, ours func() (result, error)) error {
	fs := []func() error{
		func() error {
			r, err := peer()
			m.peerR = append(m.peerR, r)
			return err
		},
		func() error {
			r, err := ours()
			m.oursR = append(m.oursR, r)
			return err
		},
	}
	if round%2 == 1 {
		fs[0], fs[1] = fs[1], fs[0]
	}
	for _, f := range fs {
		if err := f(); err != nil {
			return fmt.Errorf("%s: %w", m.op, err)
		}
	}
	return nil
}

// timer is the path of the rusage helper (./rusage), through which every command is measured:
// a child of this process would report this process's peak memory as its own.
type timer string

// buildTimer builds the rusage helper into dir.
func buildTimer(dir string) (timer, error) {
	path := filepath.Join(dir, "rusage")
	out, err := exec.Command("go", "build", "-o", path, "github.com/firedrill-dev/firedrill/hack/bench/rusage").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build the rusage helper: %v\n%s", err, out)
	}
	return timer(path), nil
}

// run runs a command and returns its wall time, CPU time and peak RSS.
func (t timer) run(args []string) (result, error) {
	cmd := exec.Command(string(t), args...)
	var usage, out strings.Builder
	cmd.Stdout, cmd.Stderr = &usage, &out
	if err := cmd.Run(); err != nil {
		return result{}, fmt.Errorf("%s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	var u struct {
		WallNs, CPUNs, MaxRSSKiB int64
		Exit                     int
	}
	if err := json.Unmarshal([]byte(usage.String()), &u); err != nil {
		return result{}, fmt.Errorf("%s: rusage: %v: %q", strings.Join(args, " "), err, usage.String())
	}
	if u.Exit != 0 {
		return result{}, fmt.Errorf("%s: exit status %d\n%s", strings.Join(args, " "), u.Exit, out.String())
	}
	return result{wall: time.Duration(u.WallNs), cpu: time.Duration(u.CPUNs), rssKiB: u.MaxRSSKiB}, nil
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// fill writes ConfigMaps, protobuf-encoded as kube-apiserver stores them, straight into etcd.
func fill(ctx context.Context, endpoint string, size int64) (int, error) {
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, MaxCallSendMsgSize: 64 << 20})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	enc := protobuf.NewSerializer(scheme.Scheme, scheme.Scheme)
	payload := strings.Repeat("firedrill benchmark payload ", 8<<10/28)
	// An etcd filled by an earlier run (-endpoint) is topped up, not filled twice.
	resp, err := c.Get(ctx, "/registry/configmaps/bench-", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	n := int(resp.Count)
	written := int64(n) * int64(len(payload)) // a little less than the encoded objects: tops up rather than misses
	for written < size {
		ops := make([]clientv3.Op, 0, 64)
		for range 64 {
			ns := fmt.Sprintf("bench-%03d", n%100)
			cm := &corev1.ConfigMap{
				TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%07d", n), Namespace: ns, UID: "00000000-0000-0000-0000-000000000000"},
				Data:       map[string]string{"payload": payload},
			}
			var b strings.Builder
			if err := enc.Encode(cm, &b); err != nil {
				return n, err
			}
			ops = append(ops, clientv3.OpPut("/registry/configmaps/"+ns+"/"+cm.Name, b.String()))
			written += int64(b.Len())
			n++
		}
		if _, err := c.Txn(ctx).Then(ops...).Commit(); err != nil {
			return n, err
		}
	}
	return n, nil
}

var _ runtime.Object = (*corev1.ConfigMap)(nil)

func wall(r result) time.Duration { return r.wall }
func cpu(r result) time.Duration  { return r.cpu }

func median(rs []result, f func(result) time.Duration) time.Duration {
	s := make([]time.Duration, len(rs))
	for i, r := range rs {
		s[i] = f(r)
	}
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// peakRSS is the largest peak resident memory of rs in KiB, 0 when none was measured.
func peakRSS(rs []result) int64 {
	var m int64
	for _, r := range rs {
		m = max(m, r.rssKiB)
	}
	return m
}

func mib(kib int64) string {
	if kib == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MiB", float64(kib)/1024)
}
