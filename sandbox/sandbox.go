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
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
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
	// Nodes is the number of kwok nodes; 0 means 1.
	Nodes int
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
	pki      *pki
	rest     *rest.Config
	client   kubernetes.Interface

	mu    sync.Mutex
	procs []*process
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
	if opts.Nodes <= 0 {
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
	defer func() {
		if err != nil {
			_ = s.stop()
			if ctx.Err() != nil {
				err = fmt.Errorf("sandbox start interrupted: %w", ctx.Err())
			}
		}
	}()

	if s.pki, err = writePKI(filepath.Join(dir, "pki")); err != nil {
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
	etcd, err := s.launch(ctx, component{
		name:   "etcd",
		nports: 2,
		args: func(p []int) []string {
			client, peer := loopbackURL("http", p[0]), loopbackURL("http", p[1])
			return []string{
				"--name=default", "--data-dir=" + filepath.Join(s.opts.Dir, "etcd"),
				"--listen-client-urls=" + client, "--advertise-client-urls=" + client,
				"--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer,
				"--initial-cluster=default=" + peer,
				// Room for benchmarks that fill the store with gigabytes.
				"--quota-backend-bytes=" + fmt.Sprint(8<<30),
			}
		},
		ready: func(ctx context.Context, p []int) error { return probeEtcd(ctx, loopbackURL("http", p[0])) },
	})
	if err != nil {
		return err
	}
	s.update(func(st *State) { st.EtcdEndpoints = []string{loopbackURL("http", etcd.ports[0])} })

	if err := s.startAPIServer(ctx, "kube-apiserver", defaultServiceCIDR); err != nil {
		return err
	}
	if err := createStorageClass(ctx, s.client); err != nil {
		return &ComponentError{Component: "kube-apiserver", Err: fmt.Errorf("create StorageClass: %w", err)}
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		_, err := s.launch(gctx, component{
			name:   "kube-controller-manager",
			nports: 1,
			args: func(p []int) []string {
				return append(s.componentAuthArgs(p[0]),
					"--leader-elect=false",
					"--controllers=*",
					"--use-service-account-credentials=false",
					"--service-account-private-key-file="+s.pki.SAKey,
					"--root-ca-file="+s.pki.CACert,
					"--cluster-cidr=10.244.0.0/16",
					// Dynamic PersistentVolumes for the "standard" StorageClass, so PVCs bind.
					"--enable-hostpath-provisioner=true",
				)
			},
			ready: func(ctx context.Context, p []int) error {
				if err := probeHealthz(ctx, fmt.Sprintf("https://127.0.0.1:%d/healthz", p[0])); err != nil {
					return err
				}
				// The service-account controller creating default/default shows controllers are running.
				return probeDefaultServiceAccount(ctx, s.client)
			},
		})
		return err
	})
	g.Go(func() error {
		_, err := s.launch(gctx, component{
			name:   "kube-scheduler",
			nports: 1,
			args: func(p []int) []string {
				return append(s.componentAuthArgs(p[0]), "--leader-elect=false")
			},
			ready: func(ctx context.Context, p []int) error {
				return probeHealthz(ctx, fmt.Sprintf("https://127.0.0.1:%d/healthz", p[0]))
			},
		})
		return err
	})
	g.Go(func() error {
		if _, err := s.launch(gctx, component{
			name:   "kwok",
			nports: 1,
			args: func(p []int) []string {
				args := []string{
					"--kubeconfig=" + s.state.Kubeconfig,
					"--manage-all-nodes=true",
					"--cidr=10.0.0.1/16",
					"--node-ip=10.0.0.1",
					fmt.Sprintf("--server-address=127.0.0.1:%d", p[0]),
				}
				for _, f := range kwokStages(s.binDir) {
					args = append(args, "--config="+f)
				}
				return args
			},
			ready: func(ctx context.Context, p []int) error {
				return probeHealthz(ctx, fmt.Sprintf("http://127.0.0.1:%d/healthz", p[0]))
			},
		}); err != nil {
			return err
		}
		return s.createNodes(gctx)
	})
	return g.Wait()
}

// defaultServiceCIDR is kubeadm's default, so a scratch API server on a restored kubeadm cluster
// finds its "kubernetes" Service inside the range.
const defaultServiceCIDR = "10.96.0.0/12"

// startAPIServer starts kube-apiserver (bin: a name in the bin dir or an absolute path) on the
// recorded etcd endpoints, and connects the sandbox's clients to it.
func (s *Sandbox) startAPIServer(ctx context.Context, bin, serviceCIDR string) error {
	_, err := s.launch(ctx, component{
		name:   "kube-apiserver",
		bin:    bin,
		nports: 1,
		args: func(p []int) []string {
			args := []string{
				"--etcd-servers=" + strings.Join(s.state.EtcdEndpoints, ","),
				"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", p[0]),
				"--tls-cert-file=" + s.pki.ServingCert, "--tls-private-key-file=" + s.pki.ServingKey,
				"--cert-dir=" + filepath.Join(s.opts.Dir, "apiserver"),
				"--token-auth-file=" + s.pki.TokenFile,
				"--authorization-mode=RBAC",
				"--service-account-key-file=" + s.pki.SAPub,
				"--service-account-signing-key-file=" + s.pki.SAKey,
				"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
				"--service-cluster-ip-range=" + serviceCIDR,
				"--allow-privileged=true",
				"--profiling=false",
			}
			if s.opts.EncryptionConfig != "" {
				args = append(args, "--encryption-provider-config="+s.opts.EncryptionConfig)
			}
			return args
		},
		ready: func(ctx context.Context, p []int) error {
			if err := s.connect(p[0]); err != nil {
				return err
			}
			return probeAPIServer(ctx, s.client)
		},
	})
	return err
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

// component describes how to start one binary and how to tell it is ready.
type component struct {
	name   string
	bin    string // defaults to name
	nports int
	args   func(ports []int) []string
	env    []string
	ready  func(ctx context.Context, ports []int) error
}

// launch starts a component and waits until it is ready. Ports are picked free just before the
// start; if another process takes one in between, the component is started again on new ports.
func (s *Sandbox) launch(ctx context.Context, c component) (*process, error) {
	bin := c.bin
	if bin == "" {
		bin = c.name
	}
	logPath := filepath.Join(s.opts.Dir, "logs", c.name+".log")
	t0 := time.Now()
	for attempt := 1; ; attempt++ {
		ports, err := freePorts(c.nports)
		if err != nil {
			return nil, &ComponentError{Component: c.name, Err: err}
		}
		if !filepath.IsAbs(bin) {
			bin = filepath.Join(s.binDir, bin)
		}
		p, err := startProcess(c.name, bin, c.args(ports), c.env, logPath, ports, s.opts.Detach)
		if err != nil {
			return nil, &ComponentError{Component: c.name, Err: err, Log: logPath}
		}
		s.track(p)
		err = s.waitReady(ctx, p, c)
		if err == nil {
			fmt.Fprintf(s.progress, "  %-24s ready in %4.1fs  %s\n", c.name, time.Since(t0).Seconds(), describePorts(ports))
			return p, nil
		}
		var taken *portTakenError
		if errors.As(err, &taken) && attempt < 3 {
			_ = stopGroup(p.state(), 5*time.Second)
			s.untrack(p)
			continue
		}
		if taken != nil {
			err = taken.ComponentError
		}
		return nil, err
	}
}

// portTakenError is a start-up failure because a port was taken between picking and binding.
type portTakenError struct{ *ComponentError }

func (s *Sandbox) waitReady(ctx context.Context, p *process, c component) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.ReadyTimeout)
	defer cancel()
	var last error
	for {
		if p.exited() {
			tail := tailFile(p.logPath, p.logOffset, 15)
			ce := &ComponentError{Component: c.name, Err: fmt.Errorf("exited during start-up (%v)", p.waitErr), Log: p.logPath, LastLines: tail}
			if strings.Contains(tail, "address already in use") {
				return &portTakenError{ce}
			}
			return ce
		}
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		last = c.ready(pctx, p.ports)
		pcancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return &ComponentError{Component: c.name, Err: fmt.Errorf("not ready after %s: %v", s.opts.ReadyTimeout, last),
					Log: p.logPath, LastLines: tailFile(p.logPath, p.logOffset, 15)}
			}
			return &ComponentError{Component: c.name, Err: ctx.Err(), Log: p.logPath}
		case <-p.done:
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (s *Sandbox) track(p *process) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.procs = append(s.procs, p)
	s.state.Processes = append(s.state.Processes, p.state())
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

func (s *Sandbox) untrack(p *process) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.procs = slices.DeleteFunc(s.procs, func(q *process) bool { return q == p })
	s.state.Processes = slices.DeleteFunc(s.state.Processes, func(q ProcessState) bool { return q.PGID == p.pgid })
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
	var p *process
	for _, q := range s.procs {
		if q.name == name {
			p = q
		}
	}
	s.mu.Unlock()
	if p == nil {
		return fmt.Errorf("sandbox: no component %q is running", name)
	}
	if err := stopGroup(p.state(), 10*time.Second); err != nil {
		return err
	}
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
	s.untrack(p)
	return nil
}

func (s *Sandbox) stop() error {
	s.mu.Lock()
	st := s.state
	procs := slices.Clone(s.procs)
	s.mu.Unlock()
	err := stopProcesses(st.Processes)
	for _, p := range procs {
		select {
		case <-p.done:
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

func loopbackURL(scheme string, port int) string {
	return fmt.Sprintf("%s://127.0.0.1:%d", scheme, port)
}

func describePorts(ports []int) string {
	var b strings.Builder
	for i, p := range ports {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "127.0.0.1:%d", p)
	}
	return b.String()
}

// freePorts asks the kernel for n distinct free loopback ports.
func freePorts(n int) ([]int, error) {
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func checkBinaries(binDir string, names []string) error {
	var missing []string
	for _, n := range names {
		if st, err := os.Stat(filepath.Join(binDir, n)); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			missing = append(missing, n)
		}
	}
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
