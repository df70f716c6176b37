// Command bench runs firedrill's etcd operations side by side with the etcd tools they replace,
// on a sandbox etcd holding at least -size of Kubernetes objects, and prints the ratios:
//
//	firedrill snapshot etcd   vs  etcdctl snapshot save     (target ≤ 1.1× time, ≤ 100 MiB peak RSS)
//	firedrill restore etcd    vs  etcdutl snapshot restore  (target ≤ 1.1×)
//	etcdObjectsDecode check   vs  etcdutl snapshot status   (target ≤ 3×)
//
// Absolute times mean little on shared machines; the ratios, measured in one run with the tools
// alternating, are the result. `make bench` runs it.
package main

import (
	"context"
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
	only := flag.String("only", "", "run only these operations, comma-separated: snapshot, restore, decode (restore needs snapshot)")
	flag.Parse()
	if err := run(*size, *rounds, *binDir, *endpoint, *only); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type measure struct {
	op, peer, ours   string
	peerT, oursT     []time.Duration
	peerRSS, oursRSS []int64 // KiB
	target           string
}

func run(size int64, rounds int, binDir string) error {
	ctx := context.Background()
	work, err := os.MkdirTemp("", "firedrill-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	fmt.Printf("starting a sandbox etcd in %s ...\n", work)
	sb, err := sandbox.Start(ctx, sandbox.Options{Dir: filepath.Join(work, "sandbox"), BinDir: binDir})
	if err != nil {
		return err
	}
	defer sb.Stop()
	ep := sb.EtcdEndpoints()[0]
	fmt.Printf("filling it with %d MiB of ConfigMaps ...\n", size>>20)
	n, err := fill(ctx, ep, size)
	if err != nil {
		return err
	}
	fmt.Printf("%d objects written\n", n)

	bin := func(name string) string { return filepath.Join(binDir, name) }
	snap := measure{op: "snapshot", peer: "etcdctl snapshot save", ours: "firedrill snapshot etcd", target: "≤ 1.1×, ≤ 100 MiB"}
	rest := measure{op: "restore", peer: "etcdutl snapshot restore", ours: "firedrill restore etcd", target: "≤ 1.1×"}
	dec := measure{op: "decode all", peer: "etcdutl snapshot status", ours: "etcdObjectsDecode check", target: "≤ 3×"}
	file := filepath.Join(work, "bench.db")
	for i := range rounds {
		fmt.Printf("round %d/%d\n", i+1, rounds)
		p1, p2 := filepath.Join(work, fmt.Sprintf("ctl-%d.db", i)), filepath.Join(work, fmt.Sprintf("fd-%d.db", i))
		if err := snap.pair(i, []string{bin("etcdctl"), "--endpoints", ep, "snapshot", "save", p1},
			[]string{bin("firedrill"), "snapshot", "etcd", "--endpoints", ep, "--out", p2}); err != nil {
			return err
		}
		os.Rename(p2, file)
		os.Remove(p1)
		d1, d2 := filepath.Join(work, fmt.Sprintf("utl-%d", i)), filepath.Join(work, fmt.Sprintf("fdr-%d", i))
		if err := rest.pair(i, []string{bin("etcdutl"), "snapshot", "restore", file, "--data-dir", d1, "--bump-revision", "1000000000", "--mark-compacted"},
			[]string{bin("firedrill"), "restore", "etcd", file, "--data-dir", d2, "--bump-revision", "1000000000", "--mark-compacted"}); err != nil {
			return err
		}
		os.RemoveAll(d1)
		os.RemoveAll(d2)
	}

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
	target := &verify.EtcdTarget{Restored: scratch.Client(), Snapshot: verify.SnapshotReport{
		Path: file, SizeBytes: rep.SizeBytes, SHA256: rep.SHA256, HasHash: rep.HasHash, HashMatches: rep.HashMatches,
		Readable: rep.Readable, ReadError: rep.ReadError, Revision: rep.Revision, TotalKeys: rep.TotalKeys, Version: rep.Version}}
	for i := range rounds {
		peer := func() (time.Duration, int64, error) {
			return timeCmd([]string{bin("etcdutl"), "snapshot", "status", file, "-w", "json"})
		}
		ours := func() (time.Duration, int64, error) {
			t0 := time.Now()
			o := checks[0].Run(ctx, target)
			if o.Status != verify.StatusPassed {
				return 0, 0, fmt.Errorf("decode check: %s: %s", o.Status, o.Message)
			}
			return time.Since(t0), 0, nil
		}
		if err := dec.pairFunc(i, peer, ours); err != nil {
			return err
		}
	}

	st, _ := os.Stat(file)
	fmt.Printf("\nsnapshot size %d MiB, %d objects, %d rounds; medians; RSS is peak resident memory\n\n", st.Size()>>20, n, rounds)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "operation\tpeer\tfiredrill\tratio\tpeer RSS\tfiredrill RSS\ttarget")
	for _, m := range []measure{snap, rest, dec} {
		pm, om := median(m.peerT), median(m.oursT)
		fmt.Fprintf(tw, "%s\t%s %s\t%s %s\t%.2f×\t%s\t%s\t%s\n", m.op, m.peer, pm.Round(time.Millisecond), m.ours, om.Round(time.Millisecond),
			float64(om)/float64(pm), rss(m.peerRSS), rss(m.oursRSS), m.target)
	}
	return tw.Flush()
}

// pair measures both commands once, alternating which goes first so neither always gets the
// warmer page cache.
func (m *measure) pair(round int, peer, ours []string) error {
	return m.pairFunc(round, func() (time.Duration, int64, error) { return timeCmd(peer) }, func() (time.Duration, int64, error) { return timeCmd(ours) })
}

func (m *measure) pairFunc(round int, peer, ours func() (time.Duration, int64, error)) error {
	fs := []func() error{
		func() error {
			d, r, err := peer()
			m.peerT, m.peerRSS = append(m.peerT, d), append(m.peerRSS, r)
			return err
		},
		func() error {
			d, r, err := ours()
			m.oursT, m.oursRSS = append(m.oursT, d), append(m.oursRSS, r)
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

// timeCmd runs a command and returns its wall time and peak RSS (KiB).
func timeCmd(args []string) (time.Duration, int64, error) {
	cmd := exec.Command(args[0], args[1:]...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, 0, fmt.Errorf("%s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	d := time.Since(t0)
	var maxRSS int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		maxRSS = ru.Maxrss
	}
	return d, maxRSS, nil
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
	var written int64
	n := 0
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

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func rss(kib []int64) string {
	if len(kib) == 0 || slices.Max(kib) == 0 {
		return "-"
	}
	return fmt.Sprintf("%d MiB", slices.Max(kib)>>10)
}
