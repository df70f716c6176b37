package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/firedrill-dev/firedrill/internal/controlplane"
)

// The real node's fixed place on this machine. Several of its components write to host paths no
// flag moves (see hostPaths), so there is one real node per machine and these names are fixed.
const (
	nodeBridge    = "firedrill0"
	nodePodCIDR   = "10.244.0.0/24"
	nodeIP        = "10.244.0.1"
	nodeServices  = controlplane.DefaultServiceCIDR
	nodeRunDir    = "/run/firedrill-node" // sockets, the machine's claim and its host record
	nodeCgroup    = "firedrill"           // every pod and the container runtime run below it
	nodeRouteRule = "7244"                // policy-routing priority and table: pods reach only the bridge
	claimFile     = "host.json"
)

// hostPaths are written by kubelet, containerd, runc or the CNI plugins whatever their flags say.
// Those that did not exist before the node started are removed by down. (The controller-manager's
// /usr/libexec/kubernetes and /tmp/hostpath_pv are not among them: its flex-volume dir is moved
// and its hostPath provisioner is off beside a real node.)
var hostPaths = []string{
	"/var/lib/kubelet", "/var/lib/kubelet/device-plugins", "/var/log/containers", "/var/log/pods",
	"/var/lib/cni", "/var/lib/cni/results", "/run/containerd", "/opt/containerd", "/etc/cni",
}

// hostSysctls are the settings kubelet, kube-proxy, the bridge plugin and kube-router are known to
// change; their values are recorded before the node starts and put back by down.
var hostSysctls = []string{
	"vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
	"kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes",
	"net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding", "net.ipv6.conf.all.forwarding",
	"net.ipv4.conf.all.route_localnet", "net.ipv4.conf.default.forwarding",
	"net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables",
	"net.netfilter.nf_conntrack_max", "net.netfilter.nf_conntrack_tcp_timeout_established",
	"net.netfilter.nf_conntrack_tcp_timeout_close_wait", "net.netfilter.nf_conntrack_tcp_be_liberal",
}

// ErrRealNodeBusy is returned by Start when another sandbox's real node runs on this machine.
var ErrRealNodeBusy = errors.New("a real-node sandbox is already running on this machine")

// hostRecord is what the machine looked like before the real node started, and whose node it
// is. It lives in nodeRunDir (not in the sandbox's Dir) so that it outlives a removed Dir and the
// next start can clean up after a sandbox that was killed and never stopped.
type hostRecord struct {
	Dir         string            `json:"dir"`
	StartedAt   time.Time         `json:"startedAt"`
	Sysctls     map[string]string `json:"sysctls"` // absent ones are not recorded
	IPTables    string            `json:"iptables"`
	IP6Tables   string            `json:"ip6tables"`
	NFTables    []string          `json:"nftables"` // "family name"
	IPSets      []string          `json:"ipsets"`
	AbsentPaths []string          `json:"absentPaths"`
}

// CanRunRealNode says why this machine cannot run the sandbox's real node, or nil when it can:
// it needs root, cgroups, the networking commands and the node's binaries in binDir.
func CanRunRealNode(binDir string) error {
	var why []string
	if os.Geteuid() != 0 {
		why = append(why, "it needs root (kubelet, containerd and the bridge change the host)")
	}
	if !hasCgroups() {
		why = append(why, "no cgroup hierarchies with cpu, memory and pids are mounted under /sys/fs/cgroup")
	}
	for _, c := range []string{"ip", "iptables", "iptables-save", "iptables-restore", "nft"} {
		if _, err := lookCmd(c); err != nil {
			why = append(why, fmt.Sprintf("the %s command is missing (Debian: %s)", c, debOf(c)))
		}
	}
	if m := controlplane.MissingBinaries(binDir, nodeBinaries); len(m) > 0 {
		why = append(why, fmt.Sprintf("%s not found in %s (run `make sandbox-bin`)", strings.Join(m, ", "), binDir))
	}
	for _, img := range []string{"pause.tar", "probe.tar"} {
		if _, err := os.Stat(filepath.Join(binDir, "images", img)); err != nil {
			why = append(why, fmt.Sprintf("image %s not found in %s (run `make sandbox-bin`)", img, filepath.Join(binDir, "images")))
		}
	}
	if len(why) == 0 {
		return nil
	}
	return fmt.Errorf("this machine cannot run the sandbox's real node: %s", strings.Join(why, "; "))
}

func debOf(cmd string) string {
	switch cmd {
	case "ip":
		return "iproute2"
	case "nft":
		return "nftables"
	}
	return "iptables"
}

func hasCgroups() bool {
	if b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		c := strings.Fields(string(b))
		return slices.Contains(c, "cpu") && slices.Contains(c, "memory") && slices.Contains(c, "pids")
	}
	for _, c := range []string{"cpu", "memory", "pids"} {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", c, "cgroup.procs")); err != nil {
			return false
		}
	}
	return true
}

// lookCmd finds a host command on PATH or in /sbin directories a non-root PATH may lack.
func lookCmd(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(d, name); isExec(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// run runs a host command and returns its output; the error carries the output.
func run(ctx context.Context, name string, args ...string) (string, error) {
	path, err := lookCmd(name)
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, path, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// claimNode makes this sandbox the machine's real node: it refuses while another one runs,
// cleans up after one that died without being stopped, and records the host as it is now.
func claimNode(ctx context.Context, dir string) error {
	_, err := os.Stat(nodeRunDir)
	runDirAbsent := errors.Is(err, fs.ErrNotExist)
	if err := os.MkdirAll(nodeRunDir, 0o755); err != nil {
		return err
	}
	unlock, err := lockFile(ctx, filepath.Join(nodeRunDir, "lock"))
	if err != nil {
		return err
	}
	defer unlock()
	if rec, err := loadClaim(); err == nil {
		if st, err := Load(rec.Dir); err == nil && len(st.Running()) > 0 {
			return fmt.Errorf("%w (in %s): stop it first with `firedrill sandbox down --dir %s`", ErrRealNodeBusy, rec.Dir, rec.Dir)
		}
		// Its sandbox is gone but its node was never taken down: do that now.
		if err := teardownNode(ctx, rec); err != nil {
			return fmt.Errorf("clean up the real node a stopped sandbox in %s left: %w", rec.Dir, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	rec, err := recordHost(ctx, dir)
	if err != nil {
		return fmt.Errorf("record the host's settings: %w", err)
	}
	if runDirAbsent {
		rec.AbsentPaths = append(rec.AbsentPaths, nodeRunDir)
	}
	b, _ := json.MarshalIndent(rec, "", "  ")
	return writeFileAtomic(filepath.Join(nodeRunDir, claimFile), b, 0o600)
}

func loadClaim() (*hostRecord, error) {
	b, err := os.ReadFile(filepath.Join(nodeRunDir, claimFile))
	if err != nil {
		return nil, err
	}
	var rec hostRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("%s is unreadable (%v): remove it once the node's processes are gone", filepath.Join(nodeRunDir, claimFile), err)
	}
	return &rec, nil
}

// releaseNode takes down the real node claimed by dir, if dir holds the claim.
func releaseNode(ctx context.Context, dir string) error {
	rec, err := loadClaim()
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if rec.Dir != dir {
		return nil
	}
	return teardownNode(ctx, rec)
}

func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func recordHost(ctx context.Context, dir string) (*hostRecord, error) {
	rec := &hostRecord{Dir: dir, StartedAt: time.Now().UTC(), Sysctls: map[string]string{}}
	for _, k := range hostSysctls {
		if v, err := os.ReadFile(sysctlPath(k)); err == nil {
			rec.Sysctls[k] = strings.TrimSpace(string(v))
		}
	}
	var err error
	if rec.IPTables, err = run(ctx, "iptables-save"); err != nil {
		return nil, err
	}
	if _, e := lookCmd("ip6tables-save"); e == nil {
		if rec.IP6Tables, err = run(ctx, "ip6tables-save"); err != nil {
			return nil, err
		}
	}
	if rec.NFTables, err = nftTables(ctx); err != nil {
		return nil, err
	}
	rec.IPSets = ipsets(ctx)
	for _, p := range hostPaths {
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			rec.AbsentPaths = append(rec.AbsentPaths, p)
		}
	}
	return rec, nil
}

func sysctlPath(k string) string { return "/proc/sys/" + strings.ReplaceAll(k, ".", "/") }

func nftTables(ctx context.Context) ([]string, error) {
	out, err := run(ctx, "nft", "list", "tables")
	if err != nil {
		return nil, err
	}
	var tables []string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "table" {
			tables = append(tables, f[1]+" "+f[2])
		}
	}
	return tables, nil
}

func ipsets(ctx context.Context) []string {
	out, err := run(ctx, "ipset", "list", "-n")
	if err != nil {
		return nil
	}
	return strings.Fields(out)
}

// setupNetwork makes the node's bridge with the node address, keeps pod traffic on it (policy
// routing with nothing but the bridge) and drops anything for node, pod or service addresses
// that arrives from another interface, so nothing outside this machine reaches them.
func setupNetwork(ctx context.Context) error {
	steps := [][]string{
		{"ip", "link", "add", nodeBridge, "type", "bridge"},
		{"ip", "addr", "add", nodeIP + "/24", "dev", nodeBridge},
		{"ip", "link", "set", nodeBridge, "up"},
		{"ip", "route", "add", nodePodCIDR, "dev", nodeBridge, "table", nodeRouteRule},
		{"ip", "route", "add", "unreachable", "default", "table", nodeRouteRule},
		{"ip", "rule", "add", "from", nodePodCIDR, "lookup", nodeRouteRule, "priority", nodeRouteRule},
		{"iptables", "-t", "raw", "-N", "FIREDRILL-GUARD"},
		{"iptables", "-t", "raw", "-A", "FIREDRILL-GUARD", "-i", "lo", "-j", "RETURN"},
		{"iptables", "-t", "raw", "-A", "FIREDRILL-GUARD", "-i", nodeBridge, "-j", "RETURN"},
		{"iptables", "-t", "raw", "-A", "FIREDRILL-GUARD", "-d", nodePodCIDR, "-j", "DROP"},
		{"iptables", "-t", "raw", "-A", "FIREDRILL-GUARD", "-d", nodeServices, "-j", "DROP"},
		{"iptables", "-t", "raw", "-I", "PREROUTING", "-j", "FIREDRILL-GUARD"},
	}
	for _, s := range steps {
		if _, err := run(ctx, s[0], s[1:]...); err != nil {
			return fmt.Errorf("set up the node's network: %w", err)
		}
	}
	return nil
}

// teardownNode puts the host back as rec found it. Processes are already stopped by their
// process groups; what is left in the node's cgroups (containers, shims) is killed here. Every
// step runs even when one fails; the errors are joined.
func teardownNode(ctx context.Context, rec *hostRecord) error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(killCgroups())
	add(unmountUnder(append([]string{rec.Dir}, rec.AbsentPaths...)))
	_, _ = run(ctx, "ip", "link", "del", nodeBridge)
	_, _ = run(ctx, "ip", "rule", "del", "priority", nodeRouteRule)
	_, _ = run(ctx, "ip", "route", "flush", "table", nodeRouteRule)
	add(restoreFirewall(ctx, rec))
	for k, v := range rec.Sysctls {
		if cur, err := os.ReadFile(sysctlPath(k)); err == nil && strings.TrimSpace(string(cur)) != v {
			add(os.WriteFile(sysctlPath(k), []byte(v), 0o644))
		}
	}
	// Deepest first would leave parents; a parent that was absent goes with all it holds.
	sort.Strings(rec.AbsentPaths)
	for _, p := range rec.AbsentPaths {
		if p == nodeRunDir {
			continue // holds the claim, removed last
		}
		if err := os.RemoveAll(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			add(err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	os.Remove(filepath.Join(nodeRunDir, claimFile))
	if slices.Contains(rec.AbsentPaths, nodeRunDir) {
		os.RemoveAll(nodeRunDir)
	}
	return nil
}

// restoreFirewall loads the recorded iptables rules back and removes the nftables tables and
// ipsets that appeared since (kube-proxy's, kube-router's, and the iptables tables kubelet made).
func restoreFirewall(ctx context.Context, rec *hostRecord) error {
	var errs []error
	for _, t := range []struct{ cmd, saved string }{{"iptables-restore", rec.IPTables}, {"ip6tables-restore", rec.IP6Tables}} {
		if strings.TrimSpace(t.saved) == "" {
			continue
		}
		cmd := exec.CommandContext(ctx, t.cmd)
		cmd.Stdin = strings.NewReader(t.saved)
		if out, err := cmd.CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %v: %s", t.cmd, err, out))
		}
	}
	now, err := nftTables(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	for _, t := range now {
		if !slices.Contains(rec.NFTables, t) {
			f := strings.Fields(t)
			if _, err := run(ctx, "nft", "delete", "table", f[0], f[1]); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, s := range ipsets(ctx) {
		if !slices.Contains(rec.IPSets, s) {
			_, _ = run(ctx, "ipset", "flush", s)
			if _, err := run(ctx, "ipset", "destroy", s); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// cgroupRoots are the directories of the node's cgroup in every mounted hierarchy.
func cgroupRoots() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var roots []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		i := slices.Index(fields, "-")
		if i < 0 || i+1 >= len(fields) || len(fields) < 5 {
			continue
		}
		if t := fields[i+1]; t == "cgroup" || t == "cgroup2" {
			roots = append(roots, filepath.Join(fields[4], nodeCgroup))
		}
	}
	return roots
}

// makeCgroups creates the node's cgroup in every hierarchy (kubelet wants its cgroup root to
// exist) and moves pid (containerd: its shims and containers follow) into its "runtime" child.
func makeCgroups(pid int) error {
	for _, root := range cgroupRoots() {
		rt := filepath.Join(root, "runtime")
		if err := os.MkdirAll(rt, 0o755); err != nil {
			continue // a hierarchy that is read-only to us (systemd's named one on some hosts)
		}
		// A new cpuset cgroup (v1) has no CPUs and no memory nodes: nothing can join it, and
		// kubelet's cgroups below would inherit the emptiness. Give both the host's.
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if v, err := os.ReadFile(filepath.Join(filepath.Dir(root), f)); err == nil {
				_ = os.WriteFile(filepath.Join(root, f), v, 0o644)
				_ = os.WriteFile(filepath.Join(rt, f), v, 0o644)
			}
		}
		if pid > 0 {
			_ = os.WriteFile(filepath.Join(rt, "cgroup.procs"), []byte(fmt.Sprint(pid)), 0o644)
		}
	}
	return nil
}

// killCgroups kills every process left in the node's cgroups (containers, shims, a runtime that
// outlived its process group) and removes the cgroups.
func killCgroups() error {
	roots := cgroupRoots()
	deadline := time.Now().Add(30 * time.Second)
	for {
		left := 0
		for _, root := range roots {
			_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
				if err != nil || !d.IsDir() {
					return nil
				}
				b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
				if err != nil {
					return nil
				}
				for _, f := range strings.Fields(string(b)) {
					var pid int
					if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 {
						_ = syscall.Kill(pid, syscall.SIGKILL)
						left++
					}
				}
				return nil
			})
		}
		// A frozen cgroup (kubelet freezes none, but a crashed runc may leave one) would keep its
		// processes alive through SIGKILL.
		for _, root := range roots {
			if strings.Contains(root, "freezer") {
				_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
					if err == nil && d.IsDir() {
						_ = os.WriteFile(filepath.Join(p, "freezer.state"), []byte("THAWED"), 0o644)
					}
					return nil
				})
			}
		}
		if left == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	var errs []error
	for _, root := range roots {
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- { // children before parents
			if err := rmdirRetry(dirs[i]); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func rmdirRetry(p string) error {
	var err error
	for range 50 {
		if err = syscall.Rmdir(p); err == nil || errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("remove cgroup %s: %w", p, err)
}

// unmountUnder detaches every mount below the given paths (and the paths themselves), deepest
// first: pod volumes, container root filesystems, network namespaces, shm.
func unmountUnder(paths []string) error {
	var errs []error
	for range 3 { // a mount can hide another beneath it
		b, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			return err
		}
		var mounts []string
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) < 5 {
				continue
			}
			mp := unescapeMount(f[4])
			for _, p := range paths {
				if p != "" && (mp == p || strings.HasPrefix(mp, strings.TrimSuffix(p, "/")+"/")) {
					mounts = append(mounts, mp)
					break
				}
			}
		}
		if len(mounts) == 0 {
			return nil
		}
		sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
		errs = errs[:0]
		for _, m := range mounts {
			if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
			}
		}
	}
	return errors.Join(errs...)
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &c); err == nil {
				b.WriteByte(byte(c))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
