package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/spf13/cobra"
)

func (a *app) sandboxCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sandbox",
		Short: "Run a local Kubernetes cluster from real components, to try firedrill or test against",
		Long: `A sandbox is a real etcd, kube-apiserver, kube-controller-manager and kube-scheduler, a real
node (kubelet, containerd, runc, a CNI bridge, kube-proxy) where the machine allows it, kwok for
simulated nodes and, with --velero, an S3 server and a Velero server (with node-agent on the real
node): plain processes, built from pinned Go modules by 'make sandbox-bin'. No Docker is needed.`,
	}
	cmd.AddCommand(a.sandboxUpCmd(), a.sandboxEnvCmd(), a.sandboxDownCmd())
	return cmd
}

// defaultSandboxDir is $FIREDRILL_SANDBOX_DIR (set by the env file), else a per-user state dir.
func (a *app) defaultSandboxDir() string {
	if d := a.getenv("FIREDRILL_SANDBOX_DIR"); d != "" {
		return d
	}
	if d := a.getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "firedrill", "sandbox")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "firedrill", "sandbox")
	}
	return filepath.Join(os.TempDir(), "firedrill-sandbox")
}

func (a *app) sandboxUpCmd() *cobra.Command {
	var opts sandbox.Options
	var nodes int
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start a sandbox and return once every component is ready",
		Example: `  # etcd, API server, controllers, scheduler and a real node (as root), else one kwok node
  firedrill sandbox up

  # only simulated nodes: three kwok nodes, no root needed
  firedrill sandbox up --real-node=false --nodes 3

  # also an S3 server and Velero with an Available backup location, in a chosen directory
  firedrill sandbox up --velero --dir /tmp/fd
  eval "$(firedrill sandbox env --dir /tmp/fd)"
  kubectl get nodes`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Dir == "" {
				opts.Dir = a.defaultSandboxDir()
			}
			explicit := cmd.Flags().Changed("real-node")
			if nodes == 0 && !(explicit && opts.RealNode) || nodes < -1 {
				return usagef("", "--nodes must be at least 1, or 0 beside --real-node; got %d", nodes)
			}
			if opts.RealNode {
				binDir := opts.BinDir
				if binDir == "" {
					binDir = sandbox.FindBinDir()
				}
				if err := sandbox.CanRunRealNode(binDir); err != nil {
					if explicit {
						return err
					}
					fmt.Fprintf(a.err, "%v.\nStarting a sandbox with simulated (kwok) nodes only.\n", err)
					opts.RealNode = false
				}
			}
			if opts.NetworkPolicy && !opts.RealNode {
				return usagef("", "--network-policy needs the real node (--real-node)")
			}
			switch {
			case nodes >= 0:
				opts.Nodes = nodes
			case opts.RealNode:
				opts.Nodes = 0
			default:
				opts.Nodes = 1
			}

			if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
				return fmt.Errorf("create sandbox dir: %w", err)
			}
			opts.Detach = true
			opts.Progress = a.err
			fmt.Fprintf(a.err, "Starting sandbox in %s ...\n", opts.Dir)
			t0 := time.Now()
			sb, err := sandbox.Start(cmd.Context(), opts)
			if errors.Is(err, sandbox.ErrRealNodeBusy) && !explicit {
				fmt.Fprintf(a.err, "%v.\nStarting a sandbox with simulated (kwok) nodes only.\n", err)
				opts.RealNode, opts.NetworkPolicy = false, false
				if nodes < 0 {
					opts.Nodes = 1
				}
				sb, err = sandbox.Start(cmd.Context(), opts)
			}
			if err != nil {
				return err
			}
			st := sb.State()
			fmt.Fprintf(a.err, "Sandbox ready in %.1fs.\n", time.Since(t0).Seconds())
			return a.print(st, func(p printer) {
				p("API server:  %s\n", st.APIServer)
				p("etcd:        %s\n", strings.Join(st.EtcdEndpoints, ","))
				if n := st.RealNode; n != nil {
					p("Real node:   %s at %s, pods on %s; images %s\n", n.Name, n.IP, n.PodCIDR, strings.Join(n.Images, ", "))
				}
				if st.S3 != nil {
					p("S3:          %s (bucket %s)\n", st.S3.URL, st.S3.Bucket)
					p("Velero:      namespace %s, backup location %q Available\n", st.VeleroNamespace, sandbox.BackupStorageLocation)
				}
				p("kubeconfig:  %s\n", st.Kubeconfig)
				p("logs:        %s\n\n", filepath.Join(st.Dir, "logs"))
				p("Use it:   eval \"$(firedrill sandbox env --dir %s)\"   # or: source %s\n", shellArg(st.Dir), filepath.Join(st.Dir, "env"))
				p("Stop it:  firedrill sandbox down --dir %s\n", shellArg(st.Dir))
			})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&opts.Velero, "velero", false, "also start an S3 server and a Velero server with an Available backup location")
	f.BoolVar(&opts.RealNode, "real-node", true, "also run a real node (kubelet, containerd, runc) that runs pods: needs root; without the flag, on where the machine allows it")
	f.BoolVar(&opts.NetworkPolicy, "network-policy", false, "enforce NetworkPolicy on the real node with kube-router's firewall (test sandboxes only)")
	f.IntVar(&nodes, "nodes", -1, "number of simulated (kwok) nodes (default: 1, or 0 beside a real node)")
	f.StringVar(&opts.Dir, "dir", "", "directory for the sandbox's data, logs and state (default: $FIREDRILL_SANDBOX_DIR or ~/.local/state/firedrill/sandbox)")
	f.StringVar(&opts.BinDir, "bin-dir", "", "directory of the component binaries (default: $FIREDRILL_BIN_DIR, next to firedrill, or ./bin of the checkout)")
	f.DurationVar(&opts.ReadyTimeout, "ready-timeout", 2*time.Minute, "how long to wait for each component to become ready")
	return cmd
}

func (a *app) sandboxEnvCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "env",
		Short: "Print shell export lines (KUBECONFIG, FIREDRILL_ETCD_ENDPOINTS, ...) for a running sandbox",
		Example: `  eval "$(firedrill sandbox env)"
  firedrill sandbox env --dir /tmp/fd -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				dir = a.defaultSandboxDir()
			}
			st, err := loadRunningSandbox(dir)
			if err != nil {
				return err
			}
			env := map[string]string{}
			for _, kv := range st.Env() {
				env[kv[0]] = kv[1]
			}
			return a.print(env, func(p printer) { p("%s", st.EnvScript()) })
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "sandbox directory (default: $FIREDRILL_SANDBOX_DIR or ~/.local/state/firedrill/sandbox)")
	return cmd
}

func (a *app) sandboxDownCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop every process a sandbox started, by the process groups it recorded",
		Long: `Stops the sandbox recorded in --dir: each process group it started gets SIGTERM and, after 10s,
SIGKILL. Processes are never looked up by name. A real node's pods are removed first, and the host
is put back as it was before the node started: sysctls, firewall rules, the bridge, mounts,
cgroups and the host paths its components insist on. Data and logs stay in the directory.`,
		Example: `  firedrill sandbox down
  firedrill sandbox down --dir /tmp/fd`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				dir = a.defaultSandboxDir()
			}
			stopped, err := sandbox.StopDir(dir)
			if errors.Is(err, fs.ErrNotExist) {
				fmt.Fprintf(a.out, "No sandbox recorded in %s: nothing to stop.\n", dir)
				return nil
			}
			if err != nil {
				return fmt.Errorf("stop sandbox in %s: %w", dir, err)
			}
			if len(stopped) == 0 {
				fmt.Fprintf(a.out, "The sandbox in %s was not running; its record is removed.\n", dir)
				return nil
			}
			fmt.Fprintf(a.out, "Stopped %d process group(s) of the sandbox in %s: %s. Logs stay in %s.\n",
				len(stopped), dir, strings.Join(stopped, ", "), filepath.Join(dir, "logs"))
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "sandbox directory (default: $FIREDRILL_SANDBOX_DIR or ~/.local/state/firedrill/sandbox)")
	return cmd
}

func loadRunningSandbox(dir string) (sandbox.State, error) {
	st, err := sandbox.Load(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return st, fmt.Errorf("no sandbox in %s: start one with `firedrill sandbox up --dir %s`", dir, shellArg(dir))
	}
	if err != nil {
		return st, err
	}
	if len(st.Running()) == 0 {
		return st, fmt.Errorf("the sandbox in %s is not running any more: start it again with `firedrill sandbox up --dir %s`", dir, shellArg(dir))
	}
	return st, nil
}

func shellArg(s string) string {
	if strings.ContainsAny(s, " \t'\"$`\\!*?[]{}()<>|&;#~") {
		return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	}
	return s
}
