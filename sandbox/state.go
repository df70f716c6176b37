package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/firedrill-dev/firedrill/internal/controlplane"
)

const (
	stateFile = "sandbox.json"
	envFile   = "env"
)

// State is what a sandbox records in Dir/sandbox.json: enough for another process to use it
// (`firedrill sandbox env`) and to stop exactly what it started (`firedrill sandbox down`).
type State struct {
	Dir             string         `json:"dir"`
	BinDir          string         `json:"binDir"`
	StartedAt       time.Time      `json:"startedAt"`
	Kubeconfig      string         `json:"kubeconfig"`
	APIServer       string         `json:"apiServer,omitempty"`
	EtcdEndpoints   []string       `json:"etcdEndpoints,omitempty"`
	S3              *S3            `json:"s3,omitempty"`
	VeleroNamespace string         `json:"veleroNamespace,omitempty"`
	RealNode        *NodeState     `json:"realNode,omitempty"`
	Processes       []ProcessState `json:"processes"`
}

// Running lists the recorded components that are still running.
func (st State) Running() []string {
	var names []string
	for _, p := range st.Processes {
		if p.Running() {
			names = append(names, p.Name)
		}
	}
	return names
}

// Load reads the state a sandbox recorded in dir. It returns an error wrapping fs.ErrNotExist
// when dir holds no sandbox.
func Load(dir string) (State, error) {
	var st State
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("sandbox state %s is unreadable (%v): stop its processes by hand and remove it", filepath.Join(dir, stateFile), err)
	}
	return st, nil
}

// StopDir stops the sandbox recorded in dir, from any process: every recorded process group
// is sent SIGTERM and, if it lingers, SIGKILL. Nothing is looked up by name. It returns the
// names of the components that were still running.
func StopDir(dir string) ([]string, error) {
	st, err := Load(dir)
	if err != nil {
		return nil, err
	}
	running := st.Running()
	if err := stopState(st); err != nil {
		return running, err
	}
	removeStateFiles(dir)
	return running, nil
}

// stopState stops what st records. A real node goes first and in order: kubelet, so it restarts
// nothing; then its pods, through the runtime, so their networks and mounts are released; then
// every process; then the host is put back as it was before the node started.
func stopState(st State) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var errs []error
	if st.RealNode != nil {
		for _, p := range st.Processes {
			if p.Name == "kubelet" || p.Name == "kube-router" {
				errs = append(errs, controlplane.StopGroup(p, 10*time.Second))
			}
		}
		removePods(ctx, st.RealNode.ContainerdSocket)
	}
	errs = append(errs, stopProcesses(st.Processes))
	if st.RealNode != nil {
		if err := releaseNode(ctx, st.Dir); err != nil {
			errs = append(errs, fmt.Errorf("put the host back as it was: %w", err))
		}
	}
	return errors.Join(errs...)
}

// stopProcesses stops clients before the API server and the API server before its store, so
// that shutdown is quick and quiet; within a tier, in parallel.
func stopProcesses(ps []ProcessState) error {
	tier := func(name string) int {
		switch name {
		case "kube-apiserver":
			return 1
		case "etcd", "versitygw":
			return 2
		default:
			return 0
		}
	}
	var errs []error
	for t := range 3 {
		var (
			wg sync.WaitGroup
			mu sync.Mutex
		)
		for _, p := range ps {
			if tier(p.Name) != t {
				continue
			}
			wg.Go(func() {
				if err := controlplane.StopGroup(p, 10*time.Second); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	return errors.Join(errs...)
}

func (s *Sandbox) saveStateLocked() error {
	b, err := json.MarshalIndent(s.state, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(s.state.Dir, stateFile), b, 0o600)
}

// prepareDir makes dir ready for a new sandbox: it refuses one that is still running and clears
// what a stopped one left, only among the names a sandbox writes.
func prepareDir(dir string) error {
	st, err := Load(dir)
	switch {
	case err == nil:
		if running := st.Running(); len(running) > 0 {
			return fmt.Errorf("%w in %s (%s): use it, or stop it with `firedrill sandbox down --dir %s`",
				ErrAlreadyRunning, dir, strings.Join(running, ", "), dir)
		}
	case errors.Is(err, fs.ErrNotExist):
	default:
		return err
	}
	// A real node that ran here and was never stopped still holds mounts under dir/node.
	if err := releaseNode(context.Background(), dir); err != nil {
		return fmt.Errorf("sandbox: take down the real node a killed sandbox left in %s: %w", dir, err)
	}
	for _, name := range []string{stateFile, envFile, "kubeconfig", "etcd", "pki", "apiserver", "certs", "s3", "velero", "logs", "node", "flexvolume"} {
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("sandbox: clear %s: %w", dir, err)
		}
	}
	return os.MkdirAll(filepath.Join(dir, "logs"), 0o755)
}

func removeStateFiles(dir string) {
	os.Remove(filepath.Join(dir, stateFile))
	os.Remove(filepath.Join(dir, envFile))
}

// Env returns the environment a person or a test uses to reach the sandbox, in a stable order.
func (st State) Env() [][2]string {
	env := map[string]string{
		"KUBECONFIG":            st.Kubeconfig,
		"FIREDRILL_SANDBOX_DIR": st.Dir,
		"FIREDRILL_BIN_DIR":     st.BinDir,
	}
	if len(st.EtcdEndpoints) > 0 {
		env["FIREDRILL_ETCD_ENDPOINTS"] = strings.Join(st.EtcdEndpoints, ",")
	}
	if st.S3 != nil {
		env["FIREDRILL_S3_URL"] = st.S3.URL
		env["FIREDRILL_S3_REGION"] = st.S3.Region
		env["FIREDRILL_S3_BUCKET"] = st.S3.Bucket
		env["FIREDRILL_S3_ACCESS_KEY_ID"] = st.S3.AccessKey
		env["FIREDRILL_S3_SECRET_ACCESS_KEY"] = st.S3.SecretKey
	}
	if st.RealNode != nil {
		// Drills' probe pods run the probe image the real node has imported.
		env["FIREDRILL_PROBE_IMAGE"] = ProbeImage
	}
	if st.VeleroNamespace != "" {
		// The velero CLI reads this, so `velero backup get` works after sourcing the file.
		env["VELERO_NAMESPACE"] = st.VeleroNamespace
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([][2]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, [2]string{k, env[k]})
	}
	return out
}

// EnvScript renders Env as shell export lines; the bin directory goes first on PATH so the
// pinned kubectl, etcdctl and velero are the ones a person runs.
func (st State) EnvScript() string {
	var b strings.Builder
	b.WriteString("# firedrill sandbox in " + st.Dir + "; load with: source " + filepath.Join(st.Dir, envFile) + "\n")
	for _, kv := range st.Env() {
		fmt.Fprintf(&b, "export %s=%s\n", kv[0], shellQuote(kv[1]))
	}
	fmt.Fprintf(&b, "export PATH=%s:\"$PATH\"\n", shellQuote(st.BinDir))
	return b.String()
}

func writeEnvFile(st State) error {
	return writeFileAtomic(filepath.Join(st.Dir, envFile), []byte(st.EnvScript()), 0o600)
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
