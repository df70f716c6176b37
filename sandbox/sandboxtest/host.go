package sandboxtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// HostState is what a real node may change on this machine, as text per aspect, so that a test
// can show the host is left as it was found.
type HostState map[string]string

// hostSysctls is wider than what the sandbox restores, so a setting it does not know about shows up.
var hostSysctls = []string{
	"vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
	"kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes", "net.ipv4.ip_forward",
	"net.ipv4.conf.all.forwarding", "net.ipv6.conf.all.forwarding", "net.ipv4.conf.all.route_localnet",
	"net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables",
	"net.netfilter.nf_conntrack_max", "net.netfilter.nf_conntrack_tcp_timeout_established",
	"net.netfilter.nf_conntrack_tcp_timeout_close_wait", "net.netfilter.nf_conntrack_tcp_be_liberal",
	"net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter", "vm.max_map_count",
	"fs.inotify.max_user_instances", "fs.inotify.max_user_watches", "kernel.pid_max",
}

// hostPaths are the fixed paths a real node's components write to whatever their flags say.
var hostPaths = []string{
	"/var/lib/kubelet", "/var/log/containers", "/var/log/pods", "/var/lib/cni", "/run/containerd",
	"/opt/containerd", "/etc/cni", "/usr/libexec/kubernetes", "/run/firedrill-node",
}

// CaptureHost records the host's sysctls, firewall (iptables rules, nftables tables, ipsets),
// links, routes and rules, mounts, the node's cgroups and the fixed host paths.
func CaptureHost(t testing.TB) HostState {
	t.Helper()
	h := HostState{}
	var sys []string
	for _, k := range hostSysctls {
		b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(k, ".", "/"))
		v := strings.TrimSpace(string(b))
		if err != nil {
			v = "(absent)"
		}
		sys = append(sys, k+"="+v)
	}
	h["sysctls"] = strings.Join(sys, "\n")
	for _, c := range [][]string{
		{"iptables", "-S"}, {"iptables", "-t", "nat", "-S"}, {"iptables", "-t", "raw", "-S"}, {"iptables", "-t", "mangle", "-S"},
		{"nft", "list", "tables"}, {"ipset", "list", "-n"},
		{"ip", "-o", "link", "show"}, {"ip", "rule", "show"}, {"ip", "route", "show", "table", "all"},
	} {
		out, err := exec.Command(c[0], c[1:]...).CombinedOutput()
		if err != nil {
			out = fmt.Appendf(nil, "(%v) %s", err, out)
		}
		h[strings.Join(c, " ")] = normaliseLinks(string(out))
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	var mounts []string
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 4 {
			mounts = append(mounts, f[4])
		}
	}
	sort.Strings(mounts)
	h["mounts"] = strings.Join(mounts, "\n")
	cg, _ := filepath.Glob("/sys/fs/cgroup/*/firedrill")
	h["cgroups"] = strings.Join(cg, "\n")
	var paths []string
	for _, p := range hostPaths {
		if _, err := os.Lstat(p); err == nil {
			paths = append(paths, p)
		}
	}
	h["paths"] = strings.Join(paths, "\n")
	return h
}

// normaliseLinks drops the counters and per-boot numbers `ip link` prints.
func normaliseLinks(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if i := strings.Index(l, " qlen"); i > 0 && strings.Contains(l, ": <") {
			l = l[:i]
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// Diff lists the aspects in which now differs from h, with both texts.
func (h HostState) Diff(now HostState) string {
	var keys []string
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		if h[k] != now[k] {
			fmt.Fprintf(&b, "%s:\n  before:\n    %s\n  after:\n    %s\n", k,
				strings.ReplaceAll(h[k], "\n", "\n    "), strings.ReplaceAll(now[k], "\n", "\n    "))
		}
	}
	return b.String()
}
