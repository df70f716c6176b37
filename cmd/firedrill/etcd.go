package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/firedrill-dev/firedrill/report"
	"github.com/firedrill-dev/firedrill/snapshot/etcd"
)

func (a *app) snapshotCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Take a backup now, as a one-off operator action",
	}
	cmd.AddCommand(a.snapshotEtcdCmd())
	return cmd
}

type snapshotResult struct {
	Path      string    `json:"path"`
	SHA256    string    `json:"sha256"`
	SizeBytes int64     `json:"sizeBytes"`
	Endpoint  string    `json:"endpoint"`
	Revision  int64     `json:"revision"`
	Version   string    `json:"version,omitempty"`
	TakenAt   time.Time `json:"takenAt"`
	Seconds   float64   `json:"seconds"`
}

func (a *app) snapshotEtcdCmd() *cobra.Command {
	var (
		endpoints         string
		cacert, cert, key string
		out               string
		dialTimeout       time.Duration
		force             bool
	)
	cmd := &cobra.Command{
		Use:   "etcd --out FILE",
		Short: "Save an etcd snapshot to a file, streaming, with its SHA-256",
		Long: `Streams a snapshot from the first etcd endpoint that answers into FILE. The file appears only
when complete (it is written beside FILE and renamed), so an interrupted or failed snapshot
leaves nothing behind. Memory use stays flat whatever the database size.`,
		Example: `  firedrill snapshot etcd --endpoints https://10.0.0.10:2379,https://10.0.0.11:2379 \
    --cacert /etc/kubernetes/pki/etcd/ca.crt --cert /etc/kubernetes/pki/etcd/healthcheck-client.crt \
    --key /etc/kubernetes/pki/etcd/healthcheck-client.key --out /var/backups/etcd/$(date +%F).db`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usagef("Run 'firedrill snapshot etcd --help' for usage.", "--out FILE is required")
			}
			eps := splitList(endpoints)
			if len(eps) == 0 {
				eps = splitList(a.getenv("FIREDRILL_ETCD_ENDPOINTS"))
			}
			if len(eps) == 0 {
				return usagef("", "no etcd endpoints: pass --endpoints (or set FIREDRILL_ETCD_ENDPOINTS)")
			}
			if _, err := os.Stat(out); err == nil && !force {
				return usagef("", "%s exists: choose another --out, or pass --force to replace it", out)
			}
			var tls *etcd.TLSFiles
			if cacert != "" || cert != "" || key != "" {
				tls = &etcd.TLSFiles{CAFile: cacert, CertFile: cert, KeyFile: key}
			}
			p := newProgress(a.err, "")
			p.Step("snapshot")
			t0 := time.Now()
			snap, err := etcd.Take(cmd.Context(), etcd.TakeOptions{Endpoints: eps, TLS: tls, DialTimeout: dialTimeout, Path: out,
				Progress: func(n int64) { p.Bytes(n, 0) }})
			p.Close()
			if err != nil {
				return err
			}
			// No Inspect here: Take has verified etcd's hash while streaming, and another pass over
			// the file would cost seconds and its size in memory; a drill or a restore checks it.
			res := snapshotResult{Path: snap.Path, SHA256: snap.SHA256, SizeBytes: snap.SizeBytes, Endpoint: snap.Location,
				Revision: snap.Revision, Version: snap.Version, TakenAt: snap.CreatedAt, Seconds: time.Since(t0).Seconds()}
			return a.print(res, func(p printer) {
				p("Snapshot saved: %s\n", res.Path)
				p("  from:     %s\n", res.Endpoint)
				p("  size:     %s in %s\n", report.Bytes(res.SizeBytes), report.Duration(time.Duration(res.Seconds*float64(time.Second))))
				p("  sha256:   %s (etcd's appended hash verified)\n", res.SHA256)
				if res.Version != "" {
					p("  revision: %d (storage version %s)\n", res.Revision, res.Version)
				} else {
					p("  revision: %d\n", res.Revision)
				}
				p("Drill it: firedrill run a scenario with backup.etcd.latestFrom.dir: %s\n", filepath.Dir(res.Path))
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&endpoints, "endpoints", "", "comma-separated etcd client URLs, tried in order (default: $FIREDRILL_ETCD_ENDPOINTS)")
	fl.StringVar(&cacert, "cacert", "", "CA bundle to verify the etcd servers")
	fl.StringVar(&cert, "cert", "", "client certificate")
	fl.StringVar(&key, "key", "", "client key")
	fl.StringVar(&out, "out", "", "snapshot file to write (required)")
	fl.DurationVar(&dialTimeout, "dial-timeout", 5*time.Second, "connection timeout per endpoint")
	fl.BoolVar(&force, "force", false, "replace --out if it exists")
	return cmd
}

func (a *app) restoreCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "restore",
		Short: "Restore a backup for a real recovery, with integrity checked first",
	}
	cmd.AddCommand(a.restoreEtcdCmd(), a.restoreVeleroCmd())
	return cmd
}

type restoreResult struct {
	Snapshot string `json:"snapshot"`
	SHA256   string `json:"sha256"`
	DataDir  string `json:"dataDir"`
	Name     string `json:"name"`
	Bumped   uint64 `json:"bumpRevision"`
}

func (a *app) restoreEtcdCmd() *cobra.Command {
	var (
		dataDir, name                       string
		peerURLs, initialCluster, clusterTk string
		bump                                uint64
		markCompacted                       bool
		skipHashCheck                       bool
	)
	cmd := &cobra.Command{
		Use:   "etcd FILE --data-dir DIR",
		Short: "Restore an etcd snapshot into a new data directory, for etcd's recovery procedure",
		Long: `Checks FILE's integrity (etcd's appended SHA-256, and that etcd can read it), then restores it
into DIR, which must not exist or be empty — an existing data directory is never touched. It
then prints the remaining steps of etcd's disaster-recovery procedure. Nothing is started.`,
		Example: `  # member master-1 of a three-member cluster
  firedrill restore etcd /var/backups/etcd/2026-11-27.db --data-dir /var/lib/etcd-restored \
    --name master-1 --initial-advertise-peer-urls https://10.0.0.10:2380 \
    --initial-cluster master-1=https://10.0.0.10:2380,master-2=https://10.0.0.11:2380,master-3=https://10.0.0.12:2380 \
    --bump-revision 1000000000 --mark-compacted`,
		Args: exactArgs(1, "one snapshot FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			file := args[0]
			if dataDir == "" {
				return usagef("Run 'firedrill restore etcd --help' for usage.", "--data-dir DIR is required")
			}
			if bump > 0 && !markCompacted || bump == 0 && markCompacted {
				return usagef("", "--bump-revision and --mark-compacted go together (as in etcdutl): they keep clients' watches from silently missing changes")
			}
			rep, err := etcd.Verify(cmd.Context(), file)
			if err != nil {
				return err
			}
			switch {
			case rep.HasHash && !rep.HashMatches:
				return &codedError{code: exitFailed, err: fmt.Errorf("%s is corrupt: the SHA-256 etcd appended does not match its data; use another snapshot", file)}
			case !rep.Readable:
				return &codedError{code: exitFailed, err: fmt.Errorf("%s is not a readable etcd snapshot: %s", file, rep.ReadError)}
			case !rep.HasHash && !skipHashCheck:
				return &codedError{code: exitFailed, err: fmt.Errorf("%s has no integrity hash (a raw copy of member/snap/db?): pass --skip-hash-check to restore it unverified", file)}
			}
			if err := etcd.Restore(cmd.Context(), etcd.RestoreOptions{SnapshotPath: file, DataDir: dataDir, Name: name,
				PeerURLs: splitList(peerURLs), InitialCluster: initialCluster, InitialClusterToken: clusterTk,
				BumpRevision: bump, MarkCompacted: markCompacted, SkipHashCheck: skipHashCheck, Inspected: true}); err != nil {
				if errors.Is(err, etcd.ErrCorrupt) {
					return &codedError{code: exitFailed, err: err}
				}
				return err
			}
			abs, _ := filepath.Abs(dataDir)
			res := restoreResult{Snapshot: file, SHA256: rep.SHA256, DataDir: abs, Name: name, Bumped: bump}
			return a.print(res, func(p printer) {
				p("Restored %s (sha256 %s, integrity verified) into %s.\n\n", file, rep.SHA256, abs)
				p(`Next steps of etcd's recovery procedure:
  1. Stop every kube-apiserver, then every etcd member of the cluster.
  2. Restore the same snapshot once per member, each with its own --name and
     --initial-advertise-peer-urls and the same --initial-cluster (this one: %s).
  3. On each member, move its restored directory to the etcd data dir (keep the old one aside).
  4. Start etcd on each member with the same --name, peer URLs and --initial-cluster.
  5. Check it: etcdctl endpoint health --cluster && etcdctl endpoint status --cluster -w table
  6. Start the kube-apiservers, then restart kube-controller-manager, kube-scheduler and the
     kubelets so that no component keeps a cache newer than the restored data.
`, name)
				if bump == 0 {
					p("\nWithout --bump-revision, clients watching at a newer revision than the snapshot's may miss changes.\n")
				}
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&dataDir, "data-dir", "", "new data directory to create (required; must not exist or be empty)")
	fl.StringVar(&name, "name", "default", "member name the restored data dir is for")
	fl.StringVar(&peerURLs, "initial-advertise-peer-urls", "", "this member's peer URLs, comma-separated (default http://localhost:2380, as etcdutl)")
	fl.StringVar(&initialCluster, "initial-cluster", "", "every member as name=peerURL, comma-separated (default NAME=http://localhost:2380)")
	fl.StringVar(&clusterTk, "initial-cluster-token", "", "cluster token (default etcd-cluster, as etcdutl)")
	fl.Uint64Var(&bump, "bump-revision", 0, "add this to the restored revision (with --mark-compacted), e.g. 1000000000")
	fl.BoolVar(&markCompacted, "mark-compacted", false, "mark the revisions before the bump compacted, so watchers re-list")
	fl.BoolVar(&skipHashCheck, "skip-hash-check", false, "restore a raw db copy that has no integrity hash")
	return cmd
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
