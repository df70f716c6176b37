// Package sandbox runs a real local Kubernetes cluster from the component binaries that
// `make sandbox-bin` builds: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok
// for simulated nodes and, optionally, an S3 server and a Velero server. Every component is a
// plain process on loopback, in its own process group, logging under one directory.
//
// Tests, `make demo` and the scratch control plane of etcd drills use it; it needs no Docker.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/firedrill-dev/firedrill/internal/controlplane"
)

// Component binaries that every sandbox needs, and those that Options.Velero adds.
var (
	coreBinaries   = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}
	veleroBinaries = []string{"versitygw", "velero", "velero-plugin-for-aws"}
)

// Options says what to start and where.
type Options struct {
	// Dir holds everything the sandbox writes: data, credentials, logs, kubeconfig, state. Required.
	// Start refuses a Dir whose sandbox is still running and never removes anything outside it.
	Dir string
	// BinDir holds the component binaries; empty means FindBinDir().
	BinDir string
	// Nodes is the number of kwok (simulated) nodes; 0 means 1, or none with RealNode.
	Nodes int
	// RealNode also runs a real node on this machine (RealNodeName): containerd, runc, a CNI
	// bridge, kubelet and kube-proxy, with images from bin/images imported, a default
	// StorageClass of `local` volumes and, with Velero, node-agent for file-system backups. It
	// needs root and cgroups (CanRunRealNode says why not), and there is one per machine: Start
	// refuses (ErrRealNodeBusy) while another sandbox's real node runs. The API server and the
	// S3 server then listen on the node's bridge address instead of loopback, so pods reach them;
	// nothing outside this machine does.
	RealNode bool
	// NetworkPolicy, with RealNode, enforces NetworkPolicy with kube-router's firewall (for test
	// sandboxes only: security advisories exist for the pinned version, it never ships).
	NetworkPolicy bool
	// Velero also starts an S3 server with a bucket and a Velero server whose default
	// BackupStorageLocation points at it, and waits until that location is Available.
	Velero bool
	// VeleroStorage, with Velero, points the BackupStorageLocation at this existing S3 server and
	// bucket (another sandbox's S3()) instead of starting one: two clusters sharing backups.
	VeleroStorage *S3
	// VeleroReadOnly, with Velero, makes the BackupStorageLocation accessMode ReadOnly, as a
	// second cluster that only restores another's backups has it.
	VeleroReadOnly bool
	// Detach lets the processes outlive the caller (firedrill sandbox up): ctx then only bounds
	// start-up, and the sandbox is stopped with StopDir. Without it a cancelled ctx, Stop or the
	// caller's death stops every process.
	Detach bool
	// Progress receives a line per component as it becomes ready; nil discards them.
	Progress io.Writer
	// ReadyTimeout bounds the wait for each component; 0 means 2 minutes (2 loaded cores are slow).
	ReadyTimeout time.Duration
	// EncryptionConfig, when set, is passed to kube-apiserver as --encryption-provider-config so
	// that resources it names are encrypted at rest in etcd.
	EncryptionConfig string
}

// S3 describes the sandbox's S3 server.
type S3 struct {
	URL       string `json:"url"`
	Region    string `json:"region"`
	Bucket    string `json:"bucket"`
	AccessKey string `json:"accessKey"`
	SecretKey string `json:"secretKey"`
}

// Sandbox is a running local cluster.
type Sandbox struct {
	opts     Options
	binDir   string
	progress io.Writer
	pki      *controlplane.PKI
	launcher *controlplane.Launcher
	rest     *rest.Config
	client   kubernetes.Interface

	mu    sync.Mutex
	procs []*controlplane.Process
	state State

	stopCtx  func() bool // unregisters the context watcher
	stopOnce sync.Once
	stopErr  error
}

// Start starts a sandbox and returns once every component is ready. On failure everything it
// started is stopped again and the error names the component, with the end of its log.
func Start(ctx context.Context, opts Options) (_ *Sandbox, err error) {
	if opts.Dir == "" {
		return nil, errors.New("sandbox: Options.Dir is required")
	}
	if opts.Nodes <= 0 && !opts.RealNode {
		opts.Nodes = 1
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 2 * time.Minute
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	opts.Dir = dir
	binDir := opts.BinDir
	if binDir == "" {
		binDir = FindBinDir()
	}
	if binDir, err = filepath.Abs(binDir); err != nil {
		return nil, err
	}
	need := coreBinaries
	if opts.Velero {
		need = append(slices.Clone(need), veleroBinaries...)
		if opts.VeleroStorage != nil {
			need = slices.DeleteFunc(need, func(n string) bool { return n == "versitygw" })
		}
	}
	if opts.RealNode {
		if err := CanRunRealNode(binDir); err != nil {
			return nil, err
		}
		if opts.Nodes == 0 {
			need = slices.DeleteFunc(slices.Clone(need), func(n string) bool { return n == "kwok" })
		}
	} else if opts.NetworkPolicy {
		return nil, errors.New("sandbox: Options.NetworkPolicy needs RealNode")
	}
	if opts.NetworkPolicy {
		need = append(slices.Clone(need), "kube-router")
	}
	if err := checkBinaries(binDir, need); err != nil {
		return nil, err
	}
	if err := prepareDir(dir); err != nil {
		return nil, err
	}

	s := &Sandbox{opts: opts, binDir: binDir, progress: opts.Progress}
	if s.progress == nil {
		s.progress = io.Discard
	}
	s.state = State{Dir: dir, BinDir: binDir, StartedAt: time.Now().UTC(), Kubeconfig: filepath.Join(dir, "kubeconfig")}
	s.launcher = &controlplane.Launcher{
		BinDir: binDir, LogDir: filepath.Join(dir, "logs"), Detach: opts.Detach,
		ReadyTimeout: opts.ReadyTimeout, Progress: s.progress,
		Started: s.track, Discarded: s.untrack,
	}
	defer func() {
		if err != nil {
			_ = s.stop()
			var ce *ComponentError
			switch {
			case ctx.Err() != nil:
				err = fmt.Errorf("sandbox start interrupted: %w", ctx.Err())
			case errors.As(err, &ce):
				err = fmt.Errorf("sandbox: %w", err)
			}
		}
	}()

	pkiOpts := controlplane.PKIOptions{}
	if opts.RealNode {
		if err := s.prepareNode(ctx); err != nil {
			return nil, fmt.Errorf("sandbox: real node: %w", err)
		}
		pkiOpts = controlplane.PKIOptions{ServingIPs: []net.IP{net.ParseIP(nodeIP)}, Users: nodeUsers()}
	}
	if s.pki, err = controlplane.NewPKI(filepath.Join(dir, "pki"), pkiOpts); err != nil {
		return nil, fmt.Errorf("sandbox: credentials: %w", err)
	}

	g, gctx := errgroup.WithContext(ctx)
	if opts.Velero && opts.VeleroStorage == nil {
		g.Go(func() error { return s.startS3(gctx) })
	}
	if opts.Velero && opts.VeleroStorage != nil {
		shared := *opts.VeleroStorage
		s.update(func(st *State) { st.S3 = &shared })
	}
	g.Go(func() error { return s.startControlPlane(gctx) })
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if opts.Velero {
		if err := s.startVelero(ctx); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	err = s.saveStateLocked()
	s.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("sandbox: record state: %w", err)
	}
	if err := writeEnvFile(s.State()); err != nil {
		return nil, err
	}
	if !opts.Detach {
		s.stopCtx = context.AfterFunc(ctx, func() { _ = s.Stop() })
	}
	return s, nil
}

func (s *Sandbox) startControlPlane(ctx context.Context) error {
	etcd, err := s.launch(ctx, controlplane.Component{
		Name:   "etcd",
		NPorts: 2,
		Args: func(p []int) []string {
			client, peer := controlplane.LoopbackURL("http", p[0]), controlplane.LoopbackURL("http", p[1])
			return []string{
				"--name=default", "--data-dir=" + filepath.Join(s.opts.Dir, "etcd"),
				"--listen-client-urls=" + client, "--advertise-client-urls=" + client,
				"--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer,
				"--initial-cluster=default=" + peer,
				// Room for benchmarks that fill the store with gigabytes.
				"--quota-backend-bytes=" + fmt.Sprint(8<<30),
			}
		},
		Ready: func(ctx context.Context, p []int) error {
			return controlplane.ProbeEtcd(ctx, controlplane.LoopbackURL("http", p[0]))
		},
	})
	if err != nil {
		return err
	}
	s.update(func(st *State) { st.EtcdEndpoints = []string{controlplane.LoopbackURL("http", etcd.Ports()[0])} })

	if err := s.startAPIServer(ctx); err != nil {
		return err
	}
	if err := createStorageClass(ctx, s.client, s.opts.RealNode); err != nil {
		return &ComponentError{Component: "kube-apiserver", Err: fmt.Errorf("create StorageClass: %w", err)}
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		_, err := s.launch(gctx, controlplane.Component{
			Name:   "kube-controller-manager",
			NPorts: 1,
			Args: func(p []int) []string {
				return append(s.componentAuthArgs(p[0]),
					"--leader-elect=false",
					"--controllers=*",
					"--use-service-account-credentials=false",
					"--service-account-private-key-file="+s.pki.SAKey,
					"--root-ca-file="+s.pki.CA.CertFile,
					"--cluster-cidr=10.244.0.0/16",
					// Dynamic PersistentVolumes for the "standard" StorageClass, so PVCs bind
					// (on a real node the local provisioner serves it instead).
					fmt.Sprintf("--enable-hostpath-provisioner=%v", !s.opts.RealNode),
					// Its default, /usr/libexec/kubernetes/..., would be created on the host.
					"--flex-volume-plugin-dir="+filepath.Join(s.opts.Dir, "flexvolume"),
				)
			},
			Ready: func(ctx context.Context, p []int) error {
				if err := controlplane.ProbeHealthz(ctx, fmt.Sprintf("https://127.0.0.1:%d/healthz", p[0])); err != nil {
					return err
				}
				// The service-account controller creating default/default shows controllers are running.
				return probeDefaultServiceAccount(ctx, s.client)
			},
		})
		return err
	})
	g.Go(func() error {
		_, err := s.launch(gctx, controlplane.Component{
			Name:   "kube-scheduler",
			NPorts: 1,
			Args: func(p []int) []string {
				return append(s.componentAuthArgs(p[0]), "--leader-elect=false")
			},
			Ready: func(ctx context.Context, p []int) error {
				return controlplane.ProbeHealthz(ctx, fmt.Sprintf("https://127.0.0.1:%d/healthz", p[0]))
			},
		})
		return err
	})
	if s.opts.RealNode {
		g.Go(func() error { return s.startNode(gctx) })
	}
	if s.opts.Nodes == 0 {
		return g.Wait()
	}
	g.Go(func() error {
		if _, err := s.launch(gctx, controlplane.Component{
			Name:   "kwok",
			NPorts: 1,
			Args: func(p []int) []string {
				args := []string{
					"--kubeconfig=" + s.state.Kubeconfig,
					// Only its own nodes: with all, it would take over the real node and its pods.
					"--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
					"--cidr=10.0.0.1/16",
					"--node-ip=10.0.0.1",
					fmt.Sprintf("--server-address=127.0.0.1:%d", p[0]),
				}
				for _, f := range kwokStages(s.binDir) {
					args = append(args, "--config="+f)
				}
				return args
			},
			Ready: func(ctx context.Context, p []int) error {
				return controlplane.ProbeHealthz(ctx, fmt.Sprintf("http://127.0.0.1:%d/healthz", p[0]))
			},
		}); err != nil {
			return err
		}
		return s.createNodes(gctx)
	})
	return g.Wait()
}

// startAPIServer starts kube-apiserver on the recorded etcd endpoints and connects the sandbox's
// clients to it.
func (s *Sandbox) startAPIServer(ctx context.Context) error {
	opts := controlplane.APIServerOptions{
		Dir: s.opts.Dir, EtcdEndpoints: s.state.EtcdEndpoints, PKI: s.pki,
		EncryptionConfig: s.opts.EncryptionConfig,
	}
	if s.opts.RealNode {
		// Pods reach it through the "kubernetes" Service, whose endpoint is this address.
		opts.BindAddress, opts.AuthorizationMode, opts.ExtraArgs = nodeIP, "Node,RBAC", s.apiServerNodeArgs()
	}
	api, err := s.launcher.StartAPIServer(ctx, opts)
	if err != nil {
		return err
	}
	s.rest, s.client = api.RESTConfig(), api.Client()
	s.update(func(st *State) { st.APIServer = api.URL() })
	return nil
}

// componentAuthArgs are the flags controller-manager and scheduler share: the admin kubeconfig,
// and a health endpoint on a loopback port so readiness is probed rather than assumed.
func (s *Sandbox) componentAuthArgs(port int) []string {
	k := s.state.Kubeconfig
	return []string{
		"--kubeconfig=" + k, "--authentication-kubeconfig=" + k, "--authorization-kubeconfig=" + k,
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", port),
		"--cert-dir=" + filepath.Join(s.opts.Dir, "certs"),
	}
}

func (s *Sandbox) launch(ctx context.Context, c controlplane.Component) (*controlplane.Process, error) {
	return s.launcher.Launch(ctx, c)
}

func (s *Sandbox) track(p *controlplane.Process) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.procs = append(s.procs, p)
	s.state.Processes = append(s.state.Processes, p.State())
	// Recorded as soon as it starts, so that `sandbox down` finds it even if start-up dies here.
	_ = s.saveStateLocked()
}

// update changes the recorded state under the lock and writes it out.
func (s *Sandbox) update(f func(st *State)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.state)
	_ = s.saveStateLocked()
}

func (s *Sandbox) untrack(p *controlplane.Process) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.procs = slices.DeleteFunc(s.procs, func(q *controlplane.Process) bool { return q == p })
	s.state.Processes = slices.DeleteFunc(s.state.Processes, func(q ProcessState) bool { return q.PGID == p.State().PGID })
	_ = s.saveStateLocked()
}

// Stop stops every process the sandbox started, children included, and waits until they are
// gone. It is safe to call more than once.
func (s *Sandbox) Stop() error {
	s.stopOnce.Do(func() {
		if s.stopCtx != nil {
			s.stopCtx()
		}
		s.stopErr = s.stop()
	})
	return s.stopErr
}

// StopComponent stops one component (its whole process group, children included) and leaves the
// others running: for tests of what happens when, say, the Velero server goes away.
func (s *Sandbox) StopComponent(name string) error {
	s.mu.Lock()
	var p *controlplane.Process
	for _, q := range s.procs {
		if q.Name() == name {
			p = q
		}
	}
	s.mu.Unlock()
	if p == nil {
		return fmt.Errorf("sandbox: no component %q is running", name)
	}
	if err := p.Stop(10 * time.Second); err != nil {
		return err
	}
	s.untrack(p)
	return nil
}

func (s *Sandbox) stop() error {
	s.mu.Lock()
	st := s.state
	procs := slices.Clone(s.procs)
	s.mu.Unlock()
	err := stopState(st)
	for _, p := range procs {
		select {
		case <-p.Done():
		case <-time.After(5 * time.Second):
		}
	}
	if err == nil {
		removeStateFiles(st.Dir)
	}
	return err
}

// Dir is the directory everything lives under.
func (s *Sandbox) Dir() string { return s.opts.Dir }

// BinDir is where the component binaries were taken from.
func (s *Sandbox) BinDir() string { return s.binDir }

// Kubeconfig is the path of an admin kubeconfig for the sandbox's API server.
func (s *Sandbox) Kubeconfig() string { return s.state.Kubeconfig }

// RESTConfig returns a fresh admin client configuration.
func (s *Sandbox) RESTConfig() *rest.Config { return rest.CopyConfig(s.rest) }

// EtcdEndpoints are the client URLs of the sandbox's etcd.
func (s *Sandbox) EtcdEndpoints() []string { return slices.Clone(s.state.EtcdEndpoints) }

// S3 describes the S3 server; nil unless started with Options.Velero.
func (s *Sandbox) S3() *S3 {
	if s.state.S3 == nil {
		return nil
	}
	c := *s.state.S3
	return &c
}

// State is what the sandbox recorded about itself, as written to Dir/sandbox.json.
func (s *Sandbox) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.state
	st.Processes = slices.Clone(st.Processes)
	return st
}

func checkBinaries(binDir string, names []string) error {
	missing := controlplane.MissingBinaries(binDir, names)
	if slices.Contains(names, "kwok") && len(kwokStages(binDir)) == 0 {
		missing = append(missing, "kwok-stages/*.yaml")
	}
	if len(missing) > 0 {
		return &MissingBinariesError{BinDir: binDir, Missing: missing}
	}
	return nil
}

func kwokStages(binDir string) []string {
	files, _ := filepath.Glob(filepath.Join(binDir, "kwok-stages", "*.yaml"))
	return files
}
