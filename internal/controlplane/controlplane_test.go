package controlplane_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/internal/controlplane"
)

// Operators see these errors when a drill cannot find its API server: they must say where
// firedrill looked and nothing about this repository's sandbox or its Makefile.
func TestLookupBinaryErrorsSpeakToOperators(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "kube-apiserver"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if p, err := controlplane.LookupBinary("", dir, "kube-apiserver"); err != nil || p != filepath.Join(dir, "kube-apiserver") {
		t.Errorf("default name in bin dir: %q %v", p, err)
	}
	if p, err := controlplane.LookupBinary("sh", dir, "kube-apiserver"); err != nil || !strings.HasSuffix(p, "/sh") {
		t.Errorf("PATH fallback: %q %v", p, err)
	}
	for _, name := range []string{"no-such-apiserver", filepath.Join(dir, "nope")} {
		_, err := controlplane.LookupBinary(name, dir, "kube-apiserver")
		if err == nil {
			t.Fatalf("%s: found", name)
		}
		for _, bad := range []string{"sandbox", "make"} {
			if strings.Contains(err.Error(), bad) {
				t.Errorf("error %q mentions %q", err, bad)
			}
		}
		if !strings.Contains(err.Error(), "not found") {
			t.Errorf("error %q does not say what is missing", err)
		}
	}
	if got := controlplane.MissingBinaries(dir, []string{"kube-apiserver", "etcd"}); len(got) != 1 || got[0] != "etcd" {
		t.Errorf("MissingBinaries = %v, want [etcd]", got)
	}
}

func TestPKIChainsAndNames(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	node := net.IPv4(10, 250, 0, 1)
	p, err := controlplane.NewPKI(dir, controlplane.PKIOptions{
		ServingIPs: []net.IP{node}, ServiceCIDR: "10.100.0.0/16",
		Users: []controlplane.User{{Name: "system:node:n1", Groups: []string{"system:nodes"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(p.CA.CertFile)
	if err != nil || !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("CA: %v", err)
	}
	serving, err := tls.LoadX509KeyPair(p.ServingCert, p.ServingKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(serving.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"127.0.0.1", "10.250.0.1", "10.100.0.1", "kubernetes.default.svc"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: host}); err != nil {
			t.Errorf("serving certificate not valid for %s: %v", host, err)
		}
	}
	client, err := tls.LoadX509KeyPair(p.KubeletClientCert, p.KubeletClientKey)
	if err != nil {
		t.Fatal(err)
	}
	cl, _ := x509.ParseCertificate(client.Certificate[0])
	if _, err := cl.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("kubelet client certificate: %v", err)
	}
	if len(cl.Subject.Organization) != 1 || cl.Subject.Organization[0] != "system:masters" {
		t.Errorf("kubelet client certificate groups %v", cl.Subject.Organization)
	}
	tokens, _ := os.ReadFile(p.TokenFile)
	tok := p.Tokens["system:node:n1"]
	if tok == "" || !strings.Contains(string(tokens), tok+",system:node:n1,system:node:n1,\"system:nodes\"") ||
		!strings.Contains(string(tokens), p.AdminToken+",firedrill-admin") {
		t.Errorf("token file:\n%s", tokens)
	}
	for _, f := range []string{p.CA.KeyFile, p.ServingKey, p.SAKey, p.TokenFile} {
		if st, err := os.Stat(f); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", f, st.Mode(), err)
		}
	}
}

func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "comp")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLaunchNamesAComponentThatExitsWithItsLog(t *testing.T) {
	t.Parallel()
	l := &controlplane.Launcher{LogDir: t.TempDir()}
	_, err := l.Launch(context.Background(), controlplane.Component{
		Name: "etcd", Bin: script(t, `echo "fatal: data dir is corrupt (boom)" >&2; exit 3`),
		Ready: func(context.Context, []int) error { return errors.New("not yet") },
	})
	var ce *controlplane.ComponentError
	if !errors.As(err, &ce) || ce.Component != "etcd" || !strings.Contains(ce.LastLines, "(boom)") || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("got %v", err)
	}
	if strings.Contains(err.Error(), "sandbox") {
		t.Errorf("error mentions the sandbox: %v", err)
	}
}

// Stop ends the whole process group (children too) and a recorded group whose leader is now
// another process (a recycled pid) is never signalled.
func TestStopEndsTheGroupAndOnlyIt(t *testing.T) {
	t.Parallel()
	var started *controlplane.Process
	l := &controlplane.Launcher{LogDir: t.TempDir(), Started: func(p *controlplane.Process) { started = p }}
	p, err := l.Launch(context.Background(), controlplane.Component{Name: "tree", Bin: script(t, `sleep 300 & sleep 300 & wait`)})
	if err != nil {
		t.Fatal(err)
	}
	if started != p {
		t.Error("Started was not called with the process")
	}
	st := p.State()
	deadline := time.Now().Add(5 * time.Second)
	for len(controlplane.GroupMembers(st.PGID)) < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(controlplane.GroupMembers(st.PGID)); n < 3 {
		t.Fatalf("group has %d members, want 3", n)
	}
	forged := st
	forged.StartTicks++
	if forged.Running() {
		t.Error("a group whose leader started at another time counts as ours")
	}
	if err := controlplane.StopGroup(forged, time.Second); err != nil || !st.Running() {
		t.Fatalf("a forged record stopped the group: %v", err)
	}
	if err := p.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if m := controlplane.GroupMembers(st.PGID); len(m) > 0 || st.Running() {
		t.Errorf("members left after Stop: %v", m)
	}
	if !p.Exited() {
		t.Error("process not reaped")
	}
}

func TestStartAPIServerRefusesEveryInterface(t *testing.T) {
	t.Parallel()
	bin := script(t, "exit 0")
	_, err := controlplane.StartAPIServer(context.Background(), controlplane.APIServerOptions{
		Dir: t.TempDir(), Binary: bin, EtcdEndpoints: []string{"http://127.0.0.1:1"}, BindAddress: "0.0.0.0",
	})
	if err == nil || !strings.Contains(err.Error(), "one address") {
		t.Fatalf("got %v", err)
	}
}
