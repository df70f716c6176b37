package drill

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

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/scenarios"
	"github.com/firedrill-dev/firedrill/snapshot/etcd"
	"github.com/firedrill-dev/firedrill/verify"
)

// EtcdOptions are the operator's choices for etcd drills that are not part of the scenario.
type EtcdOptions struct {
	// KubeAPIServer overrides spec.restore.scratchEtcd.apiServer.binary (firedrill run --kube-apiserver).
	KubeAPIServer string
	// BinDir is where component binaries are looked up before PATH.
	BinDir string
	// Logs receives the scratch kube-apiserver's progress lines; nil discards them.
	Logs io.Writer
}

// EtcdDriver drills an etcd snapshot: take one (or find the newest), check its integrity, restore it
// into a scratch etcd on loopback (optionally served by a scratch kube-apiserver), run the checks,
// and remove everything again. It never writes to the source etcd except the canary key.
type EtcdDriver struct {
	sc     *scenarios.Scenario
	opts   EtcdOptions
	spec   *scenarios.EtcdBackup
	target *scenarios.ScratchEtcd
	checks []verify.EtcdCheck

	// State of the run, filled step by step and torn down by Cleanup.
	apiServerBin string
	live         *clientv3.Client
	snap         *etcd.Snapshot
	report       *etcd.Report
	canary       *verify.Canary
	scratch      *etcd.Scratch
	api          *sandbox.APIServer
	dataDir      string
}

var _ Driver = (*EtcdDriver)(nil)

// NewEtcdDriver builds the driver for a loaded (validated, defaulted) scenario whose backup is an
// etcd snapshot.
func NewEtcdDriver(sc *scenarios.Scenario, opts EtcdOptions) (*EtcdDriver, error) {
	if sc.Spec.Backup.Etcd == nil || sc.Spec.Restore.ScratchEtcd == nil {
		return nil, fmt.Errorf("scenario %s: an etcd drill needs spec.backup.etcd and spec.restore.scratchEtcd", sc.Metadata.Name)
	}
	checks, err := verify.NewEtcdChecks(sc.Metadata.Name, sc.Spec.Checks)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", sc.Metadata.Name, err)
	}
	return &EtcdDriver{sc: sc, opts: opts, spec: sc.Spec.Backup.Etcd, target: sc.Spec.Restore.ScratchEtcd, checks: checks}, nil
}

func (d *EtcdDriver) tls() *etcd.TLSFiles {
	t := d.spec.Take.TLS
	if t == nil {
		return nil
	}
	return &etcd.TLSFiles{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile}
}

func (d *EtcdDriver) dialTimeout() time.Duration {
	if t := d.spec.Take.DialTimeout.Duration; t > 0 {
		return t
	}
	return scenarios.DefaultDialTimeout
}

func (d *EtcdDriver) apiServerBinary() string {
	if d.opts.KubeAPIServer != "" {
		return d.opts.KubeAPIServer
	}
	return d.target.APIServer.Binary
}

func (d *EtcdDriver) bumpRevision() uint64 {
	if d.target.BumpRevision != nil {
		return *d.target.BumpRevision
	}
	return scenarios.DefaultBumpRevision
}

func (d *EtcdDriver) canaryKey() string {
	for _, c := range d.sc.Spec.Checks {
		if c.Canary != nil {
			if c.Canary.Key != "" {
				return c.Canary.Key
			}
			return scenarios.CanaryKeyPrefix + d.sc.Metadata.Name
		}
	}
	return ""
}

// Preflight checks that the source can be read and the tools exist. It reads, never writes.
func (d *EtcdDriver) Preflight(ctx context.Context, rc *RunContext) error {
	if d.target.APIServer != nil {
		bin, err := sandbox.LookupBinary(d.apiServerBinary(), d.opts.BinDir, "kube-apiserver")
		if err != nil {
			return fmt.Errorf("scratch kube-apiserver: %w", err)
		}
		d.apiServerBin = bin
	}
	switch {
	case d.spec.Take != nil:
		// NewClient reaches every endpoint at once and says, per endpoint, why one did not answer.
		c, err := etcd.NewClient(d.spec.Take.Endpoints, d.tls(), d.dialTimeout())
		if err != nil {
			return fmt.Errorf("the live etcd: %w", err)
		}
		d.live = c
	case d.spec.LatestFrom != nil && d.spec.LatestFrom.Dir != "":
		if st, err := os.Stat(d.spec.LatestFrom.Dir); err != nil || !st.IsDir() {
			return fmt.Errorf("snapshot directory %s is not readable: %v", d.spec.LatestFrom.Dir, err)
		}
	}
	return nil
}

// Backup takes the snapshot (after writing the canary) or fetches the newest one.
func (d *EtcdDriver) Backup(ctx context.Context, rc *RunContext) (BackupRecord, error) {
	b := BackupRecord{Kind: "etcd-snapshot"}
	var err error
	switch {
	case d.spec.Take != nil:
		if err := d.writeCanary(ctx, rc); err != nil {
			return b, err
		}
		dir := d.spec.Take.Dir
		if dir == "" {
			dir = rc.WorkDir
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return b, fmt.Errorf("snapshot directory: %w", err)
		}
		rc.Progress.Note("taking a snapshot from " + strings.Join(d.spec.Take.Endpoints, ", "))
		d.snap, err = etcd.Take(ctx, etcd.TakeOptions{
			Endpoints: d.spec.Take.Endpoints, TLS: d.tls(), DialTimeout: d.dialTimeout(),
			Path:     filepath.Join(dir, d.sc.Metadata.Name+"-"+rc.ID+".db"),
			Progress: func(n int64) { rc.Progress.Bytes(n, 0) },
		})
	case d.spec.LatestFrom.S3 != nil:
		s3 := d.spec.LatestFrom.S3
		rc.Progress.Note(fmt.Sprintf("fetching the newest snapshot from s3://%s/%s", s3.Bucket, s3.Prefix))
		d.snap, err = etcd.LatestFromS3(ctx, etcd.S3Options{
			Endpoint: s3.Endpoint, Region: s3.Region, Bucket: s3.Bucket, Prefix: s3.Prefix,
			Pattern: d.spec.LatestFrom.Pattern, ForcePathStyle: s3.ForcePathStyle,
			CredentialsFile: s3.CredentialsFile, DestDir: rc.WorkDir,
			Progress: func(n int64) { rc.Progress.Bytes(n, 0) },
		})
	default:
		d.snap, err = etcd.LatestFromDir(d.spec.LatestFrom.Dir, d.spec.LatestFrom.Pattern)
	}
	if err != nil {
		return b, err
	}
	created := d.snap.CreatedAt.UTC()
	if d.canary != nil {
		// The canary proves the snapshot holds writes up to this moment.
		created = d.canary.WrittenAt
	}
	b.Source, b.Name, b.Location, b.SHA256, b.SizeBytes, b.SelectedBy, b.CreatedAt =
		d.snap.Source, d.snap.Name, d.snap.Location, d.snap.SHA256, d.snap.SizeBytes, d.snap.SelectedBy, &created
	b.Revision, b.Version = d.snap.Revision, d.snap.Version // take only; zero for dir and s3
	if d.snap.Source == "take" {
		b.Endpoint = d.snap.Location
	}
	rc.Progress.Note(fmt.Sprintf("snapshot %s: %s, sha256 %s", d.snap.Name, humanBytes(d.snap.SizeBytes), d.snap.SHA256))
	return b, nil
}

// canaryValue is what the drill writes before the snapshot; the whole value must come back.
type canaryValue struct {
	RunID     string    `json:"runID"`
	Scenario  string    `json:"scenario"`
	WrittenAt time.Time `json:"writtenAt"`
}

func (d *EtcdDriver) writeCanary(ctx context.Context, rc *RunContext) error {
	key := d.canaryKey()
	if key == "" {
		return nil
	}
	now := time.Now().UTC()
	v, _ := json.Marshal(canaryValue{RunID: rc.ID, Scenario: d.sc.Metadata.Name, WrittenAt: now})
	if _, err := d.live.Put(ctx, key, string(v)); err != nil {
		return fmt.Errorf("write canary key %s to the live etcd: %w", key, err)
	}
	d.canary = &verify.Canary{Key: key, Value: string(v), WrittenAt: now}
	rc.Progress.Note("canary written to the live etcd: " + key)
	return nil
}

// Restore checks the snapshot's integrity first, as a real recovery must, then restores it into
// a fresh data dir and starts the scratch etcd (and API server) on it.
func (d *EtcdDriver) Restore(ctx context.Context, rc *RunContext) error {
	rep, err := etcd.Inspect(d.snap.Path)
	if err != nil {
		return fmt.Errorf("inspect snapshot %s: %w", d.snap.Path, err)
	}
	d.report = rep
	allowRaw := d.allowMissingHash()
	switch {
	case rep.HasHash && !rep.HashMatches:
		return Fail(fmt.Errorf("snapshot integrity check failed: the SHA-256 appended by etcd does not match the data: %s is corrupt", d.snap.Name))
	case !rep.Readable:
		return Fail(fmt.Errorf("snapshot integrity check failed: etcd cannot read %s: %s", d.snap.Name, rep.ReadError))
	case !rep.HasHash && !allowRaw:
		return Fail(fmt.Errorf("snapshot integrity check failed: %s has no integrity hash (a raw copy of member/snap/db?); set etcdIntegrity.allowMissingHash to drill it anyway", d.snap.Name))
	}
	rc.Progress.Note(fmt.Sprintf("snapshot intact: revision %d, %d keys", rep.Revision, rep.TotalKeys))

	d.dataDir = filepath.Join(rc.WorkDir, "etcd-data")
	bump := d.bumpRevision()
	if err := etcd.Restore(ctx, etcd.RestoreOptions{
		SnapshotPath: d.snap.Path, DataDir: d.dataDir, Name: "firedrill",
		BumpRevision: bump, MarkCompacted: bump > 0, SkipHashCheck: !rep.HasHash && allowRaw,
		Inspected: true, // just checked above: spare the RTO a second pass over the file
	}); err != nil {
		if errors.Is(err, etcd.ErrCorrupt) || errors.Is(err, etcd.ErrNoHash) {
			return Fail(fmt.Errorf("restore snapshot: %w", err))
		}
		return fmt.Errorf("restore snapshot: %w", err)
	}
	if d.scratch, err = etcd.StartScratch(ctx, d.dataDir, "firedrill"); err != nil {
		return fmt.Errorf("start scratch etcd: %w", err)
	}
	rc.Progress.Note("scratch etcd serving the restored data on " + strings.Join(d.scratch.Endpoints(), ","))
	if d.target.APIServer != nil {
		d.api, err = sandbox.StartAPIServer(ctx, sandbox.APIServerOptions{
			Dir: filepath.Join(rc.WorkDir, "kube-apiserver"), Binary: d.apiServerBin,
			EtcdEndpoints: d.scratch.Endpoints(), EncryptionConfig: d.target.EncryptionConfig, Progress: d.opts.Logs,
		})
		if err != nil {
			return fmt.Errorf("start scratch kube-apiserver: %w", err)
		}
		rc.Progress.Note("scratch kube-apiserver serving the restored data on " + d.api.URL())
	}
	return nil
}

func (d *EtcdDriver) allowMissingHash() bool {
	for _, c := range d.sc.Spec.Checks {
		if c.EtcdIntegrity != nil && c.EtcdIntegrity.AllowMissingHash {
			return true
		}
	}
	return false
}

// verifyTarget is what the checks see of this run.
func (d *EtcdDriver) verifyTarget() *verify.EtcdTarget {
	t := &verify.EtcdTarget{Scenario: d.sc.Metadata.Name, Live: d.live, Canary: d.canary, EncryptionConfig: d.target.EncryptionConfig}
	if d.snap != nil {
		t.Snapshot.Path, t.Snapshot.SHA256, t.Snapshot.SizeBytes = d.snap.Path, d.snap.SHA256, d.snap.SizeBytes
	}
	if r := d.report; r != nil {
		t.Snapshot.SizeBytes, t.Snapshot.HasHash, t.Snapshot.HashMatches = r.SizeBytes, r.HasHash, r.HashMatches
		t.Snapshot.Readable, t.Snapshot.ReadError = r.Readable, r.ReadError
		t.Snapshot.Revision, t.Snapshot.TotalKeys, t.Snapshot.Version = r.Revision, r.TotalKeys, r.Version
		if r.SHA256 != "" {
			t.Snapshot.SHA256 = r.SHA256
		}
	}
	if d.scratch != nil {
		t.Restored = d.scratch.Client()
		if d.report != nil {
			// What the restore left: checks read there, not what the scratch API server wrote since.
			t.RestoredRevision = d.report.Revision + int64(d.bumpRevision())
		}
	}
	if d.api != nil {
		t.APIServer = d.api.RESTConfig()
	}
	return t
}

// Target says where the snapshot was restored: endpoints that lived for the run only.
func (d *EtcdDriver) Target() *TargetRecord {
	if d.scratch == nil {
		return nil
	}
	t := &TargetRecord{Kind: "scratchEtcd", Endpoints: d.scratch.Endpoints()}
	if d.api != nil {
		t.Endpoints = append(t.Endpoints, d.api.URL())
	}
	return t
}

// Verify runs every check, in order, each with its own timing.
func (d *EtcdDriver) Verify(ctx context.Context, rc *RunContext) []CheckRecord {
	t := d.verifyTarget()
	out := make([]CheckRecord, 0, len(d.checks))
	for _, c := range d.checks {
		rc.Progress.Note("check: " + c.Name())
		start := time.Now()
		o := runCheck(ctx, c, t)
		out = append(out, checkRecord(c, o, time.Since(start)))
	}
	return out
}

func runCheck(ctx context.Context, c verify.EtcdCheck, t *verify.EtcdTarget) (o verify.Outcome) {
	defer func() {
		if p := recover(); p != nil {
			o = verify.Outcome{Status: verify.StatusError, Message: fmt.Sprintf("internal error in check: %v", p)}
		}
	}()
	return c.Run(ctx, t)
}

func checkRecord(c verify.EtcdCheck, o verify.Outcome, took time.Duration) CheckRecord {
	return CheckRecord{Name: c.Name(), Type: c.Type(), Result: Result(o.Status), Message: o.Message, Evidence: o.Evidence, Seconds: took.Seconds()}
}

// NotVerified judges what can be judged without a restore — the snapshot's integrity, once it
// was inspected — and marks the other checks skipped.
func (d *EtcdDriver) NotVerified(reason string) []CheckRecord {
	out := make([]CheckRecord, 0, len(d.checks))
	for _, c := range d.checks {
		if c.Type() == scenarios.CheckEtcdIntegrity && d.report != nil {
			out = append(out, checkRecord(c, runCheck(context.Background(), c, d.verifyTarget()), 0))
			continue
		}
		out = append(out, CheckRecord{Name: c.Name(), Type: c.Type(), Result: Skipped, Message: reason})
	}
	return out
}

// Cleanup stops the scratch API server and etcd, removes the canary key from the live etcd and
// closes the client. With keep, the restored data dir stays in the run's work dir.
func (d *EtcdDriver) Cleanup(ctx context.Context, rc *RunContext, keep bool) error {
	var errs []error
	if d.api != nil {
		if err := d.api.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stop scratch kube-apiserver: %w", err))
		}
	}
	if d.scratch != nil {
		if err := d.scratch.Close(); err != nil {
			errs = append(errs, fmt.Errorf("stop scratch etcd: %w", err))
		}
	}
	if d.canary != nil && d.live != nil {
		if _, err := d.live.Delete(ctx, d.canary.Key); err != nil {
			errs = append(errs, fmt.Errorf("remove canary key %s from the live etcd: %w", d.canary.Key, err))
		}
	}
	if d.live != nil {
		d.live.Close()
	}
	if keep && d.dataDir != "" {
		rc.Progress.Note("restored etcd data kept in " + d.dataDir)
	}
	return errors.Join(errs...)
}

// Plan describes the run without doing it.
func (d *EtcdDriver) Plan() Plan {
	p := Plan{Scenario: d.sc.Metadata.Name}
	switch {
	case d.spec.Take != nil:
		tls := "without TLS client certificate"
		if t := d.spec.Take.TLS; t != nil && t.CertFile != "" {
			tls = "with TLS client certificate " + t.CertFile
		}
		p.Backup = append(p.Backup, fmt.Sprintf("take a snapshot from %s (%s), trying each endpoint in order", strings.Join(d.spec.Take.Endpoints, ", "), tls))
		if d.spec.Take.Dir != "" {
			p.Backup = append(p.Backup, "keep the snapshot in "+d.spec.Take.Dir)
		} else {
			p.Backup = append(p.Backup, "write the snapshot to the run's temporary directory (removed at cleanup)")
		}
	case d.spec.LatestFrom.S3 != nil:
		s3 := d.spec.LatestFrom.S3
		p.Backup = append(p.Backup, fmt.Sprintf("download the newest object matching %q under s3://%s/%s (newest by LastModified)", d.spec.LatestFrom.Pattern, s3.Bucket, s3.Prefix))
	default:
		p.Backup = append(p.Backup, fmt.Sprintf("use the newest file matching %q in %s (newest by modification time)", d.spec.LatestFrom.Pattern, d.spec.LatestFrom.Dir))
	}
	p.Restore = append(p.Restore,
		"verify the snapshot's SHA-256 and that etcd can read it",
		fmt.Sprintf("restore into a new data dir (revision bumped by %d, older revisions marked compacted)", d.bumpRevision()),
		"serve it from a scratch etcd embedded in firedrill, on loopback ports")
	if d.target.APIServer != nil {
		bin := d.apiServerBinary()
		if b, err := sandbox.LookupBinary(bin, d.opts.BinDir, "kube-apiserver"); err == nil {
			bin = b
		} else {
			bin += " (NOT FOUND: " + err.Error() + ")"
		}
		p.Restore = append(p.Restore, "serve it through a scratch kube-apiserver on loopback: "+bin)
	}
	if d.target.EncryptionConfig != "" {
		p.Restore = append(p.Restore, "decrypt values encrypted at rest with "+d.target.EncryptionConfig)
	}
	p.Isolation = []string{
		"the restored etcd and API server listen on 127.0.0.1 only, with fresh credentials",
		"no controllers, schedulers or kubelets run against the restored data: nothing in it acts",
	}
	for _, c := range d.sc.Spec.Checks {
		p.Checks = append(p.Checks, PlanCheck{Name: c.Name, Type: c.Type(), Description: describeCheck(c)})
	}
	if o := d.sc.Spec.Objectives; o.RTO.Duration > 0 {
		p.Objectives = append(p.Objectives, "RTO ≤ "+o.RTO.String()+" (restore start until every check passed)")
	}
	if o := d.sc.Spec.Objectives; o.RPO.Duration > 0 {
		p.Objectives = append(p.Objectives, "RPO ≤ "+o.RPO.String()+" (age of the snapshot's data at restore start)")
	}
	p.Cleanup = []string{"stop the scratch etcd and API server and remove their data (policy " + string(d.sc.Spec.Cleanup.Policy) + ")"}
	if k := d.canaryKey(); k != "" {
		p.Writes = append(p.Writes, "the live etcd: the canary key "+k+" (written before the snapshot, deleted at cleanup)")
	}
	if d.spec.Take != nil && d.spec.Take.Dir != "" {
		p.Writes = append(p.Writes, "the snapshot file in "+d.spec.Take.Dir)
	}
	return p
}

func describeCheck(c scenarios.Check) string {
	switch {
	case c.EtcdIntegrity != nil:
		return "the snapshot's appended SHA-256 matches and etcd can read it"
	case c.EtcdObjectsDecode != nil:
		return fmt.Sprintf("every value under %s decodes with Kubernetes' codecs", orDefault(c.EtcdObjectsDecode.Prefix, scenarios.DefaultDecodePrefix))
	case c.EtcdKeys != nil:
		k := c.EtcdKeys
		var b []string
		if k.Min != nil {
			b = append(b, fmt.Sprintf("≥ %d", *k.Min))
		}
		if k.Max != nil {
			b = append(b, fmt.Sprintf("≤ %d", *k.Max))
		}
		if k.Equals != nil {
			b = append(b, fmt.Sprintf("= %d", *k.Equals))
		}
		return fmt.Sprintf("keys under %s: %s", k.Prefix, strings.Join(b, ", "))
	case c.EtcdMatchesLive != nil:
		return fmt.Sprintf("keys and value digests under %s equal the live etcd's at the snapshot revision (or drift within limit)", strings.Join(c.EtcdMatchesLive.Prefixes, ", "))
	case c.ObjectsServed != nil:
		ns := "all namespaces"
		if len(c.ObjectsServed.Namespaces) > 0 {
			ns = "namespaces " + strings.Join(c.ObjectsServed.Namespaces, ", ")
		}
		return "the scratch kube-apiserver is ready and serves every object of the snapshot in " + ns
	case c.Canary != nil:
		return "the canary key written just before the snapshot is in the restored data"
	}
	return ""
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
