// Package etcddrill drills etcd snapshots: it takes one (or finds the newest), checks its
// integrity, restores it into a scratch etcd on loopback (optionally served by a scratch
// kube-apiserver), runs the checks and removes everything again. It never writes to the source
// etcd except the canary key.
package etcddrill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/sample"
	"github.com/firedrill-dev/firedrill/internal/controlplane"
	"github.com/firedrill-dev/firedrill/report"
	"github.com/firedrill-dev/firedrill/scenarios"
	"github.com/firedrill-dev/firedrill/snapshot/etcd"
	"github.com/firedrill-dev/firedrill/verify"
)

// Kind is the backup kind this driver drills: spec.backup.etcd.
const Kind = "etcd"

// Options are the operator's choices for etcd drills that are not part of the scenario.
type Options struct {
	// KubeAPIServer overrides spec.restore.scratchEtcd.apiServer.binary (firedrill run --kube-apiserver).
	KubeAPIServer string
	// BinDir is where component binaries are looked up before PATH.
	BinDir string
	// Logs receives the scratch kube-apiserver's progress lines; nil discards them.
	Logs io.Writer
}

// Driver drills etcd snapshots.
type Driver struct {
	opts Options
}

var _ drill.Driver = (*Driver)(nil)

// New returns the etcd driver.
func New(opts Options) *Driver { return &Driver{opts: opts} }

// Kind is "etcd".
func (*Driver) Kind() string { return Kind }

// NewRun prepares one drill of a loaded (validated, defaulted) scenario whose backup is an etcd
// snapshot.
func (d *Driver) NewRun(sc *scenarios.Scenario, rc *drill.RunContext) (drill.Run, error) {
	if sc.Spec.Backup.Etcd == nil || sc.Spec.Restore.ScratchEtcd == nil {
		return nil, errors.New("an etcd drill needs spec.backup.etcd and spec.restore.scratchEtcd")
	}
	checks, err := verify.NewEtcdChecks(sc.Metadata.Name, sc.Spec.Checks)
	if err != nil {
		return nil, err
	}
	return &run{sc: sc, opts: d.opts, rc: rc, spec: sc.Spec.Backup.Etcd, target: sc.Spec.Restore.ScratchEtcd, checks: checks}, nil
}

// run is one etcd drill: what it found and started, step by step, torn down by Cleanup.
type run struct {
	sc     *scenarios.Scenario
	opts   Options
	rc     *drill.RunContext
	spec   *scenarios.EtcdBackup
	target *scenarios.ScratchEtcd
	checks []verify.EtcdCheck

	apiServerBin string
	live         *clientv3.Client
	snap         *etcd.Snapshot
	report       *etcd.Report
	canary       *verify.Canary
	canaryLease  clientv3.LeaseID
	scratch      *etcd.Scratch
	api          *controlplane.APIServer
	dataDir      string

	// latestFrom: the snapshot the preflight chose, how it chose it, and why none could be
	// chosen (a finding: the backup step fails with it).
	chosen    etcd.Listed
	selection *drill.SelectionRecord
	noBackup  error
}

func (r *run) tls() *etcd.TLSFiles {
	t := r.spec.Take.TLS
	if t == nil {
		return nil
	}
	return &etcd.TLSFiles{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile}
}

func (r *run) dialTimeout() time.Duration {
	if t := r.spec.Take.DialTimeout.Duration; t > 0 {
		return t
	}
	return scenarios.DefaultDialTimeout
}

func (r *run) apiServerBinary() string {
	if r.opts.KubeAPIServer != "" {
		return r.opts.KubeAPIServer
	}
	if b := r.target.APIServer.Binary; b != "" {
		return b
	}
	return scenarios.DefaultAPIServerBinary
}

func (r *run) bumpRevision() uint64 {
	if r.target.BumpRevision != nil {
		return *r.target.BumpRevision
	}
	return scenarios.DefaultBumpRevision
}

func (r *run) canaryKey() string {
	for _, c := range r.sc.Spec.Checks {
		if c.Canary != nil {
			if c.Canary.Key != "" {
				return c.Canary.Key
			}
			return scenarios.CanaryKeyPrefix + r.sc.Metadata.Name
		}
	}
	return ""
}

// Preflight checks that the source can be read and the tools exist. It reads, never writes.
func (r *run) Preflight(ctx context.Context) error {
	if r.target.APIServer != nil {
		bin, err := controlplane.LookupBinary(r.apiServerBinary(), r.opts.BinDir, "kube-apiserver")
		if err != nil {
			return fmt.Errorf("scratch kube-apiserver: %w", err)
		}
		r.apiServerBin = bin
	}
	switch {
	case r.spec.Take != nil:
		// NewClient reaches every endpoint at once and says, per endpoint, why one did not answer.
		c, err := etcd.NewClient(r.spec.Take.Endpoints, r.tls(), r.dialTimeout())
		if err != nil {
			return fmt.Errorf("the live etcd: %w", err)
		}
		r.live = c
	case r.spec.LatestFrom != nil:
		return r.choose(ctx)
	}
	return nil
}

// choose lists the source's snapshots and chooses the one to drill (drill/sample). A window that
// holds none is no preflight problem: the backup step fails with it, recording the selection.
func (r *run) choose(ctx context.Context) error {
	l := r.spec.LatestFrom
	var (
		list []etcd.Listed
		err  error
	)
	if l.S3 != nil {
		list, err = etcd.ListS3(ctx, r.s3Options())
	} else {
		if err := readableDir(l.Dir); err != nil {
			return err
		}
		list, err = etcd.ListDir(l.Dir, l.Pattern)
	}
	if err != nil && !(errors.Is(err, etcd.ErrNoneMatch) && l.Window != nil) {
		return err
	}
	candidates := make([]sample.Candidate, len(list))
	for i, s := range list {
		candidates[i] = sample.Candidate{Name: s.Name, Time: s.ModTime}
	}
	i, sel, err := sample.ForRun(r.rc, l.Sampling, candidates)
	r.selection = sel
	switch {
	case drill.IsFailure(err):
		r.noBackup = err
		return nil
	case err != nil:
		return fmt.Errorf("choose an etcd snapshot: %w", err)
	}
	r.chosen = list[i]
	return nil
}

func (r *run) s3Options() etcd.S3Options {
	s3 := r.spec.LatestFrom.S3
	return etcd.S3Options{
		Endpoint: s3.Endpoint, Region: s3.Region, Bucket: s3.Bucket, Prefix: s3.Prefix,
		Pattern: r.spec.LatestFrom.Pattern, ForcePathStyle: s3.ForcePathStyle,
		CredentialsFile: s3.CredentialsFile, DestDir: r.rc.WorkDir,
		Progress: func(n int64) { r.rc.Progress.Bytes(n, 0) },
	}
}

// readableDir says, in an operator's words, why dir cannot be searched for snapshots.
func readableDir(dir string) error {
	st, err := os.Stat(dir)
	switch {
	case err != nil:
		return fmt.Errorf("snapshot directory %s is not readable: %w", dir, err)
	case !st.IsDir():
		return fmt.Errorf("snapshot directory %s is not a directory: point latestFrom.dir at the directory that holds the snapshots", dir)
	}
	return nil
}

// Backup takes the snapshot (after writing the canary) or fetches the newest one.
func (r *run) Backup(ctx context.Context) (drill.BackupRecord, error) {
	b := drill.BackupRecord{Kind: "etcd-snapshot"}
	rc := r.rc
	var err error
	switch {
	case r.spec.Take != nil:
		if err := r.writeCanary(ctx); err != nil {
			return b, err
		}
		dir := r.spec.Take.Dir
		if dir == "" {
			dir = rc.WorkDir
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return b, fmt.Errorf("snapshot directory: %w", err)
		}
		rc.Progress.Note("taking a snapshot from " + strings.Join(r.spec.Take.Endpoints, ", "))
		r.snap, err = etcd.Take(ctx, etcd.TakeOptions{
			Endpoints: r.spec.Take.Endpoints, TLS: r.tls(), DialTimeout: r.dialTimeout(),
			Path:     filepath.Join(dir, r.sc.Metadata.Name+"-"+rc.ID+".db"),
			Progress: func(n int64) { rc.Progress.Bytes(n, 0) },
		})
	case r.noBackup != nil:
		b.Source, b.Selection = string(etcd.SourceDir), r.selection
		if r.spec.LatestFrom.S3 != nil {
			b.Source, b.Location = string(etcd.SourceS3), r.s3Options().Location()
		} else {
			b.Location = r.spec.LatestFrom.Dir
		}
		return b, r.noBackup
	case r.spec.LatestFrom.S3 != nil:
		rc.Progress.Note(fmt.Sprintf("fetching %s from %s", r.chosen.Name, r.s3Options().Location()))
		r.snap, err = etcd.FromS3(ctx, r.s3Options(), r.chosen)
	default:
		r.snap, err = etcd.FromDir(r.spec.LatestFrom.Dir, r.chosen)
	}
	if err != nil {
		return b, err
	}
	b.Selection = r.selection
	created := r.snap.CreatedAt.UTC()
	if r.canary != nil {
		// The canary proves the snapshot holds writes up to this moment.
		created = r.canary.WrittenAt
	}
	b.Source, b.Name, b.Location, b.SHA256, b.SizeBytes, b.SelectedBy, b.CreatedAt =
		string(r.snap.Source), r.snap.Name, r.snap.Location, r.snap.SHA256, r.snap.SizeBytes, r.snap.SelectedBy, &created
	b.Revision, b.Version = r.snap.Revision, r.snap.Version // take only; zero for dir and s3
	if r.snap.Source == etcd.SourceTake {
		b.Endpoint = r.snap.Location
	}
	rc.Progress.Note(fmt.Sprintf("snapshot %s: %s, sha256 %s", r.snap.Name, report.Bytes(r.snap.SizeBytes), r.snap.SHA256))
	return b, nil
}

// canaryValue is what the drill writes before the snapshot; the whole value must come back.
type canaryValue struct {
	RunID     string    `json:"runID"`
	Scenario  string    `json:"scenario"`
	WrittenAt time.Time `json:"writtenAt"`
}

func (r *run) writeCanary(ctx context.Context) error {
	key := r.canaryKey()
	if key == "" {
		return nil
	}
	now := time.Now().UTC()
	v, _ := json.Marshal(canaryValue{RunID: r.rc.ID, Scenario: r.sc.Metadata.Name, WrittenAt: now})
	// On a lease that ends at the run's expiry: etcd itself removes the key a crashed run leaves,
	// where no janitor reaches.
	lease, err := r.live.Grant(ctx, int64(time.Until(r.rc.Expiry()).Seconds())+1)
	if err != nil {
		return fmt.Errorf("write canary key %s to the live etcd: grant its lease: %w", key, err)
	}
	if _, err := r.live.Put(ctx, key, string(v), clientv3.WithLease(lease.ID)); err != nil {
		return fmt.Errorf("write canary key %s to the live etcd: %w", key, err)
	}
	r.canary, r.canaryLease = &verify.Canary{Key: key, Value: string(v), WrittenAt: now}, lease.ID
	r.rc.Progress.Note("canary written to the live etcd: " + key)
	return nil
}

// Restore checks the snapshot's integrity first, as a real recovery must, then restores it into
// a fresh data dir and starts the scratch etcd (and API server) on it.
func (r *run) Restore(ctx context.Context) error {
	rc := r.rc
	rep, err := etcd.Inspect(r.snap.Path)
	if err != nil {
		return fmt.Errorf("inspect snapshot %s: %w", r.snap.Path, err)
	}
	r.report = rep
	allowRaw := r.allowMissingHash()
	switch {
	case rep.HasHash && !rep.HashMatches:
		return drill.Fail(fmt.Errorf("snapshot integrity check failed: the SHA-256 appended by etcd does not match the data: %s is corrupt", r.snap.Name))
	case !rep.Readable:
		return drill.Fail(fmt.Errorf("snapshot integrity check failed: etcd cannot read %s: %s", r.snap.Name, rep.ReadError))
	case !rep.HasHash && !allowRaw:
		return drill.Fail(fmt.Errorf("snapshot integrity check failed: %s has no integrity hash (a raw copy of member/snap/db?); set etcdIntegrity.allowMissingHash to drill it anyway", r.snap.Name))
	}
	rc.Progress.Note(fmt.Sprintf("snapshot intact: revision %d, %d keys", rep.Revision, rep.TotalKeys))

	r.dataDir = filepath.Join(rc.WorkDir, "etcd-data")
	bump := r.bumpRevision()
	if err := etcd.Restore(ctx, etcd.RestoreOptions{
		SnapshotPath: r.snap.Path, DataDir: r.dataDir, Name: "firedrill",
		BumpRevision: bump, MarkCompacted: bump > 0, SkipHashCheck: !rep.HasHash && allowRaw,
		Inspected: true, // just checked above: spare the RTO a second pass over the file
	}); err != nil {
		if errors.Is(err, etcd.ErrCorrupt) || errors.Is(err, etcd.ErrNoHash) {
			return drill.Fail(fmt.Errorf("restore snapshot: %w", err))
		}
		return fmt.Errorf("restore snapshot: %w", err)
	}
	if r.scratch, err = etcd.StartScratch(ctx, r.dataDir, "firedrill"); err != nil {
		return fmt.Errorf("start scratch etcd: %w", err)
	}
	rc.Progress.Note("scratch etcd serving the restored data on " + strings.Join(r.scratch.Endpoints(), ","))
	if r.target.APIServer != nil {
		r.api, err = controlplane.StartAPIServer(ctx, controlplane.APIServerOptions{
			Dir: filepath.Join(rc.WorkDir, "kube-apiserver"), Binary: r.apiServerBin,
			EtcdEndpoints: r.scratch.Endpoints(), EncryptionConfig: r.target.EncryptionConfig, Progress: r.opts.Logs,
		})
		if err != nil {
			return fmt.Errorf("start scratch kube-apiserver: %w", err)
		}
		rc.Progress.Note("scratch kube-apiserver serving the restored data on " + r.api.URL())
	}
	return nil
}

func (r *run) allowMissingHash() bool {
	for _, c := range r.sc.Spec.Checks {
		if c.EtcdIntegrity != nil && c.EtcdIntegrity.AllowMissingHash {
			return true
		}
	}
	return false
}

// verifyTarget is what the checks see of this run.
func (r *run) verifyTarget() *verify.EtcdTarget {
	t := &verify.EtcdTarget{Scenario: r.sc.Metadata.Name, Live: r.live, Canary: r.canary, EncryptionConfig: r.target.EncryptionConfig}
	if r.report != nil {
		t.Snapshot = *r.report
	}
	if r.snap != nil {
		t.Snapshot.Path = r.snap.Path
		if t.Snapshot.SHA256 == "" {
			t.Snapshot.SHA256, t.Snapshot.SizeBytes = r.snap.SHA256, r.snap.SizeBytes
		}
	}
	if r.scratch != nil {
		t.Restored = r.scratch.Client()
		if r.report != nil {
			// What the restore left: checks read there, not what the scratch API server wrote since.
			t.RestoredRevision = r.report.Revision + int64(r.bumpRevision())
		}
	}
	if r.api != nil {
		t.APIServer = r.api.RESTConfig()
	}
	return t
}

// Target says where the snapshot was restored: endpoints that lived for the run only.
func (r *run) Target() *drill.TargetRecord {
	if r.scratch == nil {
		return nil
	}
	t := &drill.TargetRecord{Kind: "scratchEtcd", Endpoints: r.scratch.Endpoints()}
	if r.api != nil {
		t.Endpoints = append(t.Endpoints, r.api.URL())
	}
	return t
}

// Checks binds the checks to the restored etcd. Without a restore, the snapshot's integrity can
// still be judged once it was inspected.
func (r *run) Checks(restored bool) []drill.Check {
	t := r.verifyTarget()
	out := make([]drill.Check, len(r.checks))
	for i, c := range r.checks {
		out[i] = drill.Check{Name: c.Name(), Type: c.Type(), Description: verify.Describe(r.sc.Spec.Checks[i], Kind)}
		if restored || (c.Type() == scenarios.CheckEtcdIntegrity && r.report != nil) {
			out[i].Run = func(ctx context.Context) drill.CheckOutcome {
				o := c.Run(ctx, t)
				return drill.CheckOutcome{Result: drill.Result(o.Status), Message: o.Message, Evidence: o.Evidence}
			}
		}
	}
	return out
}

// Cleanup stops the scratch API server and etcd, removes the canary key from the live etcd and
// closes the client. With keep, the restored data dir stays in the run's work dir.
func (r *run) Cleanup(ctx context.Context, keep bool) error {
	var errs []error
	if r.api != nil {
		if err := r.api.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stop scratch kube-apiserver: %w", err))
		}
	}
	if r.scratch != nil {
		if err := r.scratch.Close(); err != nil {
			errs = append(errs, fmt.Errorf("stop scratch etcd: %w", err))
		}
	}
	if r.canary != nil && r.live != nil {
		if _, err := r.live.Delete(ctx, r.canary.Key); err != nil {
			errs = append(errs, fmt.Errorf("remove canary key %s from the live etcd: %w", r.canary.Key, err))
		} else if _, err := r.live.Revoke(ctx, r.canaryLease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			errs = append(errs, fmt.Errorf("revoke the canary's lease in the live etcd: %w", err))
		}
	}
	if r.live != nil {
		r.live.Close()
	}
	if keep && r.dataDir != "" {
		r.rc.Progress.Note("restored etcd data kept in " + r.dataDir)
	}
	return errors.Join(errs...)
}

// Plan describes the run without doing it.
func (r *run) Plan(p *drill.Plan) {
	switch {
	case r.spec.Take != nil:
		tls := "without TLS client certificate"
		if t := r.spec.Take.TLS; t != nil && t.CertFile != "" {
			tls = "with TLS client certificate " + t.CertFile
		}
		p.Backup = append(p.Backup, fmt.Sprintf("take a snapshot from %s (%s), trying each endpoint in order", strings.Join(r.spec.Take.Endpoints, ", "), tls))
		if r.spec.Take.Dir != "" {
			p.Backup = append(p.Backup, "keep the snapshot in "+r.spec.Take.Dir)
		} else {
			p.Backup = append(p.Backup, "write the snapshot to the run's temporary directory (removed at cleanup)")
		}
	case r.spec.LatestFrom.S3 != nil:
		p.Backup = append(p.Backup, fmt.Sprintf("download %s of the objects matching %q under %s (by LastModified)", sample.Says(r.spec.LatestFrom.Sampling), r.spec.LatestFrom.Pattern, r.s3Options().Location()))
	default:
		p.Backup = append(p.Backup, fmt.Sprintf("use %s of the files matching %q in %s (by modification time)", sample.Says(r.spec.LatestFrom.Sampling), r.spec.LatestFrom.Pattern, r.spec.LatestFrom.Dir))
	}
	if r.selection != nil {
		p.Selection = r.selection
		p.Backup = append(p.Backup, sample.Describe(r.selection)...)
	}
	p.Restore = append(p.Restore,
		"verify the snapshot's SHA-256 and that etcd can read it",
		fmt.Sprintf("restore into a new data dir (revision bumped by %d, older revisions marked compacted)", r.bumpRevision()),
		"serve it from a scratch etcd embedded in firedrill, on loopback ports")
	if r.target.APIServer != nil {
		bin := r.apiServerBinary()
		if b, err := controlplane.LookupBinary(bin, r.opts.BinDir, "kube-apiserver"); err == nil {
			bin = b
		} else {
			bin += " (NOT FOUND: " + err.Error() + ")"
		}
		p.Restore = append(p.Restore, "serve it through a scratch kube-apiserver on loopback: "+bin)
	}
	if r.target.EncryptionConfig != "" {
		p.Restore = append(p.Restore, "decrypt values encrypted at rest with "+r.target.EncryptionConfig)
	}
	p.Isolation = []string{
		"the restored etcd and API server listen on 127.0.0.1 only, with fresh credentials",
		"no controllers, schedulers or kubelets run against the restored data: nothing in it acts",
	}
	p.Cleanup = append(p.Cleanup, "stop the scratch etcd and API server and remove their data")
	if k := r.canaryKey(); k != "" {
		p.Writes = append(p.Writes, "the live etcd: the canary key "+k+" (written before the snapshot on a lease that ends at the run's expiry, deleted at cleanup)")
	}
	if r.spec.Take != nil && r.spec.Take.Dir != "" {
		p.Writes = append(p.Writes, "the snapshot file in "+r.spec.Take.Dir)
	}
}
