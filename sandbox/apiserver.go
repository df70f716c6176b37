package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/firedrill-dev/firedrill/internal/controlplane"
)

// APIServerOptions configures a lone kube-apiserver on an existing etcd, for tests that want one
// beside a sandbox. Drills use controlplane.StartAPIServer directly.
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
	// ServiceCIDR is --service-cluster-ip-range. Default 10.96.0.0/12.
	ServiceCIDR  string
	ReadyTimeout time.Duration
	Progress     io.Writer
}

// APIServer is a running lone kube-apiserver.
type APIServer struct {
	*controlplane.APIServer
	dir           string
	etcdEndpoints []string
}

// StartAPIServer starts kube-apiserver on opts.EtcdEndpoints with fresh credentials and returns
// once /readyz passes. The process dies with the caller and is stopped by Stop or ctx.
func StartAPIServer(ctx context.Context, opts APIServerOptions) (*APIServer, error) {
	if opts.Dir == "" || len(opts.EtcdEndpoints) == 0 {
		return nil, errors.New("sandbox: APIServerOptions.Dir and EtcdEndpoints are required")
	}
	if _, err := LookupBinary(opts.Binary, opts.BinDir, "kube-apiserver"); err != nil {
		return nil, err
	}
	a, err := controlplane.StartAPIServer(ctx, controlplane.APIServerOptions{
		Dir: opts.Dir, Binary: opts.Binary, BinDir: opts.BinDir, EtcdEndpoints: opts.EtcdEndpoints,
		EncryptionConfig: opts.EncryptionConfig, ServiceCIDR: opts.ServiceCIDR,
		ReadyTimeout: opts.ReadyTimeout, Progress: opts.Progress,
	})
	if err != nil {
		return nil, err
	}
	dir, _ := filepath.Abs(opts.Dir)
	return &APIServer{APIServer: a, dir: dir, etcdEndpoints: opts.EtcdEndpoints}, nil
}

// State is what was recorded about it, as a sandbox records its own.
func (a *APIServer) State() State {
	return State{Dir: a.dir, Kubeconfig: a.Kubeconfig(), APIServer: a.URL(), EtcdEndpoints: a.etcdEndpoints,
		Processes: []ProcessState{a.Process().State()}}
}

// LookupBinary is controlplane.LookupBinary with a hint at how the sandbox builds its binaries.
func LookupBinary(name, binDir, def string) (string, error) {
	p, err := controlplane.LookupBinary(name, binDir, def)
	if err != nil && filepath.Base(name) == name {
		return "", fmt.Errorf("%w (the sandbox's are built by `make sandbox-bin`)", err)
	}
	return p, err
}

// FindBinDir returns where the component binaries are expected (see controlplane.FindBinDir).
func FindBinDir() string { return controlplane.FindBinDir() }
