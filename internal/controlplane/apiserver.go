package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// APIServerOptions configures kube-apiserver on an existing etcd.
type APIServerOptions struct {
	// Dir holds its kubeconfig (Dir/kubeconfig), its cert dir and, when PKI is nil, fresh
	// credentials (Dir/pki). Required.
	Dir string
	// Binary is kube-apiserver: an absolute path, or a name looked up in BinDir and then PATH.
	// Default "kube-apiserver".
	Binary string
	// BinDir is where Binary is looked up first; empty means FindBinDir().
	BinDir string
	// EtcdEndpoints of the store to serve. Required.
	EtcdEndpoints []string
	// PKI holds its credentials; nil means fresh ones in Dir/pki (that cover BindAddress).
	PKI *PKI
	// BindAddress is the one address it listens on; default 127.0.0.1. Never 0.0.0.0: what it
	// serves must stay on this machine.
	BindAddress string
	// ServiceCIDR is --service-cluster-ip-range; it should contain the restored cluster's
	// "kubernetes" Service IP. Default DefaultServiceCIDR.
	ServiceCIDR string
	// EncryptionConfig lets it read values encrypted at rest (--encryption-provider-config).
	EncryptionConfig string
	// AuthorizationMode is --authorization-mode; default "RBAC" (a cluster with kubelets wants
	// "Node,RBAC").
	AuthorizationMode string
	// ExtraArgs are appended to its flags (a later flag wins).
	ExtraArgs []string
	// ReadyTimeout bounds the wait for /readyz; 0 means 2 minutes.
	ReadyTimeout time.Duration
	// Progress receives a line once it is ready; nil discards it.
	Progress io.Writer
}

// APIServer is a running kube-apiserver.
type APIServer struct {
	proc       *Process
	url        string
	kubeconfig string
	rest       *rest.Config
	client     kubernetes.Interface
	pki        *PKI

	stopCtx  func() bool
	stopOnce sync.Once
	stopErr  error
}

// StartAPIServer starts a lone kube-apiserver on opts.EtcdEndpoints and returns once /readyz
// passes: the scratch control plane that serves a restored snapshot through the real API. It
// writes nothing but its own bookkeeping (leases, the "kubernetes" Service) to the etcd; no
// controllers run beside it. The process dies with the caller and is stopped by Stop or ctx.
func StartAPIServer(ctx context.Context, opts APIServerOptions) (_ *APIServer, err error) {
	if opts.Dir == "" || len(opts.EtcdEndpoints) == 0 {
		return nil, errors.New("kube-apiserver: a directory and etcd endpoints are required")
	}
	bin, err := LookupBinary(opts.Binary, opts.BinDir, "kube-apiserver")
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	opts.Dir = dir
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	l := &Launcher{BinDir: filepath.Dir(bin), LogDir: filepath.Join(dir, "logs"), ReadyTimeout: opts.ReadyTimeout, Progress: opts.Progress}
	opts.Binary = bin
	a, err := l.StartAPIServer(ctx, opts)
	if err != nil {
		return nil, err
	}
	a.stopCtx = context.AfterFunc(ctx, func() { _ = a.Stop() })
	return a, nil
}

// StartAPIServer starts kube-apiserver through l (which records it) and returns once /readyz
// passes. On failure the process is stopped again.
func (l *Launcher) StartAPIServer(ctx context.Context, opts APIServerOptions) (_ *APIServer, err error) {
	if opts.BindAddress == "" {
		opts.BindAddress = "127.0.0.1"
	}
	if ip := net.ParseIP(opts.BindAddress); ip == nil || ip.IsUnspecified() {
		return nil, fmt.Errorf("kube-apiserver: bind address %q must be one address of this machine", opts.BindAddress)
	}
	if opts.ServiceCIDR == "" {
		opts.ServiceCIDR = DefaultServiceCIDR
	}
	if opts.Binary == "" {
		opts.Binary = "kube-apiserver"
	}
	if opts.AuthorizationMode == "" {
		opts.AuthorizationMode = "RBAC"
	}
	a := &APIServer{pki: opts.PKI, kubeconfig: filepath.Join(opts.Dir, "kubeconfig")}
	if a.pki == nil {
		var extra []net.IP
		if ip := net.ParseIP(opts.BindAddress); !ip.IsLoopback() {
			extra = append(extra, ip)
		}
		if a.pki, err = NewPKI(filepath.Join(opts.Dir, "pki"), PKIOptions{ServiceCIDR: opts.ServiceCIDR, ServingIPs: extra}); err != nil {
			return nil, fmt.Errorf("kube-apiserver: credentials: %w", err)
		}
	}
	p := a.pki
	a.proc, err = l.Launch(ctx, Component{
		Name:   "kube-apiserver",
		Bin:    opts.Binary,
		NPorts: 1,
		Host:   opts.BindAddress,
		Args: func(ports []int) []string {
			args := []string{
				"--etcd-servers=" + strings.Join(opts.EtcdEndpoints, ","),
				"--bind-address=" + opts.BindAddress, fmt.Sprintf("--secure-port=%d", ports[0]),
				"--tls-cert-file=" + p.ServingCert, "--tls-private-key-file=" + p.ServingKey,
				"--cert-dir=" + filepath.Join(opts.Dir, "apiserver"),
				"--token-auth-file=" + p.TokenFile,
				"--authorization-mode=" + opts.AuthorizationMode,
				"--service-account-key-file=" + p.SAPub,
				"--service-account-signing-key-file=" + p.SAKey,
				"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
				"--service-cluster-ip-range=" + opts.ServiceCIDR,
				"--allow-privileged=true",
				"--profiling=false",
			}
			if opts.EncryptionConfig != "" {
				args = append(args, "--encryption-provider-config="+opts.EncryptionConfig)
			}
			return append(args, opts.ExtraArgs...)
		},
		Ready: func(ctx context.Context, ports []int) error {
			if err := a.connect(opts.BindAddress, ports[0]); err != nil {
				return err
			}
			return ProbeAPIServer(ctx, a.client)
		},
	})
	if err != nil {
		if a.proc != nil {
			_ = a.proc.Stop(10 * time.Second)
		}
		return nil, err
	}
	return a, nil
}

// connect writes the admin kubeconfig for the server on host:port and builds clients from it.
func (a *APIServer) connect(host string, port int) error {
	server := "https://" + net.JoinHostPort(host, strconv.Itoa(port))
	if a.rest != nil && a.rest.Host == server {
		return nil
	}
	rc, err := WriteKubeconfig(a.kubeconfig, "firedrill", server, a.pki.CA.CertFile, Credentials{Token: a.pki.AdminToken})
	if err != nil {
		return err
	}
	rc.QPS, rc.Burst = 100, 200
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	a.url, a.rest, a.client = server, rc, client
	return nil
}

// RESTConfig returns a fresh admin client configuration.
func (a *APIServer) RESTConfig() *rest.Config { return rest.CopyConfig(a.rest) }

// Client is an admin clientset.
func (a *APIServer) Client() kubernetes.Interface { return a.client }

// Kubeconfig is the path of an admin kubeconfig.
func (a *APIServer) Kubeconfig() string { return a.kubeconfig }

// URL of the API server.
func (a *APIServer) URL() string { return a.url }

// Log is the path of its log.
func (a *APIServer) Log() string { return a.proc.Log() }

// PKI is the credentials it was started with.
func (a *APIServer) PKI() *PKI { return a.pki }

// Process is the running process.
func (a *APIServer) Process() *Process { return a.proc }

// Stop stops the process and waits until it is gone. It is safe to call more than once.
func (a *APIServer) Stop() error {
	a.stopOnce.Do(func() {
		if a.stopCtx != nil {
			a.stopCtx()
		}
		a.stopErr = a.proc.Stop(10 * time.Second)
	})
	return a.stopErr
}
