package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"k8s.io/client-go/rest"
)

// APIServerOptions configures a lone kube-apiserver on an existing etcd: the scratch control plane
// that serves a restored snapshot through the real API.
type APIServerOptions struct {
	// Dir holds its credentials, kubeconfig and log. Required.
	Dir string
	// Binary is kube-apiserver: an absolute path, or a name looked up in BinDir and then PATH.
	// Default "kube-apiserver".
	Binary string
	// BinDir is where Binary is looked up first; empty means FindBinDir().
	BinDir string
	// EtcdEndpoints of the store to serve. Required.
	EtcdEndpoints []string
	// EncryptionConfig lets it decrypt values encrypted at rest (--encryption-provider-config).
	EncryptionConfig string
	// ServiceCIDR is --service-cluster-ip-range; it should contain the restored cluster's
	// "kubernetes" Service IP. Default 10.96.0.0/12.
	ServiceCIDR  string
	ReadyTimeout time.Duration
	Progress     io.Writer
}

// APIServer is a running lone kube-apiserver. It writes nothing but its own bookkeeping (leases,
// the "kubernetes" Service endpoints) to the etcd; no controllers run beside it.
type APIServer struct{ s *Sandbox }

// StartAPIServer starts kube-apiserver on opts.EtcdEndpoints with fresh credentials and returns
// once /readyz passes. The process dies with the caller and is stopped by Stop or ctx.
func StartAPIServer(ctx context.Context, opts APIServerOptions) (_ *APIServer, err error) {
	if opts.Dir == "" || len(opts.EtcdEndpoints) == 0 {
		return nil, errors.New("sandbox: APIServerOptions.Dir and EtcdEndpoints are required")
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 2 * time.Minute
	}
	if opts.ServiceCIDR == "" {
		opts.ServiceCIDR = defaultServiceCIDR
	}
	bin, err := LookupBinary(opts.Binary, opts.BinDir, "kube-apiserver")
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	if err := prepareDir(dir); err != nil {
		return nil, err
	}
	s := &Sandbox{
		opts:     Options{Dir: dir, ReadyTimeout: opts.ReadyTimeout, EncryptionConfig: opts.EncryptionConfig},
		binDir:   filepath.Dir(bin),
		progress: opts.Progress,
		state:    State{Dir: dir, BinDir: filepath.Dir(bin), StartedAt: time.Now().UTC(), Kubeconfig: filepath.Join(dir, "kubeconfig"), EtcdEndpoints: opts.EtcdEndpoints},
	}
	if s.progress == nil {
		s.progress = io.Discard
	}
	defer func() {
		if err != nil {
			_ = s.stop()
		}
	}()
	if s.pki, err = writePKI(filepath.Join(dir, "pki")); err != nil {
		return nil, fmt.Errorf("scratch kube-apiserver: credentials: %w", err)
	}
	if err := s.startAPIServer(ctx, bin, opts.ServiceCIDR); err != nil {
		return nil, err
	}
	s.stopCtx = context.AfterFunc(ctx, func() { _ = s.Stop() })
	return &APIServer{s: s}, nil
}

// RESTConfig returns an admin client configuration.
func (a *APIServer) RESTConfig() *rest.Config { return a.s.RESTConfig() }

// Kubeconfig is the path of an admin kubeconfig.
func (a *APIServer) Kubeconfig() string { return a.s.Kubeconfig() }

// URL of the API server.
func (a *APIServer) URL() string { return a.s.State().APIServer }

// Log is the path of its log.
func (a *APIServer) Log() string { return filepath.Join(a.s.Dir(), "logs", "kube-apiserver.log") }

// Stop stops the process and waits until it is gone.
func (a *APIServer) Stop() error { return a.s.Stop() }

// State is what was recorded about it.
func (a *APIServer) State() State { return a.s.State() }

// LookupBinary resolves a component binary: an absolute or relative path (containing a slash) as
// is; otherwise name (default def) in binDir (default FindBinDir()), then on PATH. The error says
// where it looked and how to get one.
func LookupBinary(name, binDir, def string) (string, error) {
	if name == "" {
		name = def
	}
	if filepath.Base(name) != name {
		p, err := filepath.Abs(name)
		if err != nil {
			return "", err
		}
		if st, err := os.Stat(p); err != nil || st.IsDir() {
			return "", fmt.Errorf("%s not found at %s", def, p)
		}
		return p, nil
	}
	if binDir == "" {
		binDir = FindBinDir()
	}
	if p, err := filepath.Abs(filepath.Join(binDir, name)); err == nil {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	return "", fmt.Errorf("%s not found in %s or on PATH: build it with `make sandbox-bin`, or name its path", name, binDir)
}
