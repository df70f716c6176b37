// Package scenarios holds firedrill's Scenario document (apiVersion firedrill.dev/v1alpha1): what
// to drill, where to restore it, what to check, objectives and schedule. It loads files strictly
// (unknown fields are errors with file and line), applies defaults in one place and validates
// every problem at once. It imports nothing else of firedrill's.
package scenarios

// APIVersion and Kind identify a Scenario document.
const (
	APIVersion = "firedrill.dev/v1alpha1"
	Kind       = "Scenario"
)

// Scenario is one drill definition.
type Scenario struct {
	APIVersion string   `json:"apiVersion" yaml:"apiVersion"`
	Kind       string   `json:"kind" yaml:"kind"`
	Metadata   Metadata `json:"metadata" yaml:"metadata"`
	Spec       Spec     `json:"spec" yaml:"spec"`

	// Path is the file the scenario was loaded from; relative paths inside it were resolved
	// against its directory. Not part of the document.
	Path string `json:"-" yaml:"-"`

	// lines maps field paths (spec.checks[2].name) to their line in Path, so that validation can
	// point into the file. Nil for a scenario built in code.
	lines map[string]int
}

// Metadata names and labels a scenario, like a Kubernetes object's.
type Metadata struct {
	Name        string            `json:"name" yaml:"name"`
	Labels      map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty" yaml:"annotations,omitempty"`
}

// Spec is the drill itself.
type Spec struct {
	// Schedule is a 5-field cron expression or a descriptor (@daily, @every 6h), used by `serve`.
	// Empty: the scenario only runs when asked.
	Schedule string `json:"schedule,omitempty" yaml:"schedule,omitempty"`
	// TimeZone of Schedule, an IANA name. Default UTC.
	TimeZone string `json:"timeZone,omitempty" yaml:"timeZone,omitempty"`
	// Timeout bounds the whole run, cleanup excluded. Default 30m.
	Timeout Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
	// Objectives the drill must meet to pass.
	Objectives Objectives `json:"objectives,omitempty" yaml:"objectives,omitempty"`
	// Source is the cluster whose backups are drilled (Velero drills; etcd drills name endpoints).
	Source *Source `json:"source,omitempty" yaml:"source,omitempty"`
	// Backup says which backup to drill: exactly one kind.
	Backup Backup `json:"backup" yaml:"backup"`
	// Restore says where to restore it: exactly one target, matching the backup's kind.
	Restore Restore `json:"restore" yaml:"restore"`
	// Checks prove the restored data works and is the data that was backed up.
	Checks []Check `json:"checks" yaml:"checks"`
	// Cleanup says what happens to scratch resources after the run. Default policy Always.
	Cleanup Cleanup `json:"cleanup,omitempty" yaml:"cleanup,omitempty"`
	// Notify adds this scenario's own notifications to `firedrill serve`'s receivers.
	Notify Notify `json:"notify,omitzero" yaml:"notify,omitempty"`
	// Runner shapes the Kubernetes Job a drill runs in under `firedrill serve --executor job`;
	// other executors ignore it.
	Runner *Runner `json:"runner,omitempty" yaml:"runner,omitempty"`
}

// Notify is what `firedrill serve` sends for this scenario besides what its receivers (flags
// and --notify-config) send for every scenario they match.
type Notify struct {
	// HeartbeatURL is requested (GET) after each pass of this scenario: a dead-man's switch of
	// its own (healthchecks.io and the like). Like a webhook URL it is a secret: it is never
	// logged, shown or recorded. Default: none.
	HeartbeatURL string `json:"heartbeatURL,omitempty" yaml:"heartbeatURL,omitempty"`
}

// Objectives are the recovery objectives a run is measured against. Zero means not set.
type Objectives struct {
	// RTO: the longest acceptable time from the start of the restore until every check passed.
	RTO Duration `json:"rto,omitempty" yaml:"rto,omitempty"`
	// RPO: the oldest acceptable age of the restored data when the restore starts.
	RPO Duration `json:"rpo,omitempty" yaml:"rpo,omitempty"`
}

// Source is a Kubernetes cluster reached through a kubeconfig.
type Source struct {
	Kubeconfig string `json:"kubeconfig,omitempty" yaml:"kubeconfig,omitempty"`
	Context    string `json:"context,omitempty" yaml:"context,omitempty"`
}

// Backup holds exactly one kind of backup.
type Backup struct {
	Etcd   *EtcdBackup   `json:"etcd,omitempty" yaml:"etcd,omitempty"`
	Velero *VeleroBackup `json:"velero,omitempty" yaml:"velero,omitempty"`
}

// VeleroBackup is a Velero backup of the source cluster: exactly one of LatestFrom (the newest
// Completed backup of a Schedule — the backups a team really has), Name (one named backup) or
// Create (a backup made now).
type VeleroBackup struct {
	// Namespace Velero runs in, in the source cluster. Default "velero".
	Namespace  string            `json:"namespace,omitempty" yaml:"namespace,omitempty"`
	LatestFrom *VeleroLatestFrom `json:"latestFrom,omitempty" yaml:"latestFrom,omitempty"`
	// Name of one existing Backup in Namespace; its age is the RPO.
	Name   string        `json:"name,omitempty" yaml:"name,omitempty"`
	Create *VeleroCreate `json:"create,omitempty" yaml:"create,omitempty"`
}

// VeleroLatestFrom picks a usable backup (Completed, neither expired nor being deleted) made by
// Schedule or carrying the labels of Selector (exactly one): the newest, or one at random within
// Window. Its age is the RPO.
type VeleroLatestFrom struct {
	Schedule string `json:"schedule,omitempty" yaml:"schedule,omitempty"`
	// Selector picks the Backups in Velero's namespace by their labels.
	Selector *LabelSelector `json:"selector,omitempty" yaml:"selector,omitempty"`
	// ",inline" changes nothing for encoding/json; the CRD's generator (make generate) needs it.
	Sampling `json:",inline" yaml:",inline"`
}

// VeleroCreate makes a Backup now with these settings (Velero's BackupSpec fields of the same names).
type VeleroCreate struct {
	// IncludedNamespaces are the namespaces backed up: at least one, never "*" (a scratch restore
	// is per namespace, and never restores cluster-scoped resources into the source cluster).
	IncludedNamespaces []string       `json:"includedNamespaces" yaml:"includedNamespaces"`
	ExcludedNamespaces []string       `json:"excludedNamespaces,omitempty" yaml:"excludedNamespaces,omitempty"`
	IncludedResources  []string       `json:"includedResources,omitempty" yaml:"includedResources,omitempty"`
	ExcludedResources  []string       `json:"excludedResources,omitempty" yaml:"excludedResources,omitempty"`
	LabelSelector      *LabelSelector `json:"labelSelector,omitempty" yaml:"labelSelector,omitempty"`
	// StorageLocation is the BackupStorageLocation; default: Velero's default location.
	StorageLocation string `json:"storageLocation,omitempty" yaml:"storageLocation,omitempty"`
	// TTL of the backup in Velero. Default 24h: a drill's backup is not a backup to keep.
	TTL Duration `json:"ttl,omitempty" yaml:"ttl,omitempty"`
	// SnapshotVolumes asks Velero for volume snapshots. Default false.
	SnapshotVolumes *bool `json:"snapshotVolumes,omitempty" yaml:"snapshotVolumes,omitempty"`
	// DefaultVolumesToFsBackup backs up the files of every pod volume with Velero's file-system
	// backup (kopia, through its node-agent), except volumes opted out with the pod annotation
	// backup.velero.io/backup-volumes-excludes. Default false: as Velero, only volumes opted in with
	// backup.velero.io/backup-volumes. A volumeData check proves what came back either way.
	DefaultVolumesToFsBackup bool `json:"defaultVolumesToFsBackup,omitempty" yaml:"defaultVolumesToFsBackup,omitempty"`
	// DeleteAfter deletes the Backup (a DeleteBackupRequest, which removes its data too) at cleanup.
	DeleteAfter bool `json:"deleteAfter,omitempty" yaml:"deleteAfter,omitempty"`
}

// LabelSelector selects objects by labels, as Kubernetes' metav1.LabelSelector.
type LabelSelector struct {
	MatchLabels      map[string]string          `json:"matchLabels,omitempty" yaml:"matchLabels,omitempty"`
	MatchExpressions []LabelSelectorRequirement `json:"matchExpressions,omitempty" yaml:"matchExpressions,omitempty"`
}

// LabelSelectorRequirement is one expression of a LabelSelector: operator In, NotIn, Exists or
// DoesNotExist.
type LabelSelectorRequirement struct {
	Key      string   `json:"key" yaml:"key"`
	Operator string   `json:"operator" yaml:"operator"`
	Values   []string `json:"values,omitempty" yaml:"values,omitempty"`
}

// EtcdBackup is an etcd snapshot: taken now (Take) or the newest one that exists (LatestFrom).
type EtcdBackup struct {
	Take       *EtcdTake       `json:"take,omitempty" yaml:"take,omitempty"`
	LatestFrom *EtcdLatestFrom `json:"latestFrom,omitempty" yaml:"latestFrom,omitempty"`
}

// EtcdTake takes a snapshot from a live etcd, trying the endpoints in order.
type EtcdTake struct {
	// Endpoints are client URLs (https://10.0.0.10:2379). At least one.
	Endpoints []string `json:"endpoints" yaml:"endpoints"`
	// TLS client certificate and CA; required for https endpoints that check client certs.
	TLS *TLS `json:"tls,omitempty" yaml:"tls,omitempty"`
	// DialTimeout per endpoint. Default 5s.
	DialTimeout Duration `json:"dialTimeout,omitempty" yaml:"dialTimeout,omitempty"`
	// Dir keeps the snapshot file after the run (named <scenario>-<run id>.db). Empty: a temporary
	// file, removed at cleanup.
	Dir string `json:"dir,omitempty" yaml:"dir,omitempty"`
}

// TLS names PEM files; relative paths are resolved against the scenario file.
type TLS struct {
	CAFile   string `json:"caFile,omitempty" yaml:"caFile,omitempty"`
	CertFile string `json:"certFile,omitempty" yaml:"certFile,omitempty"`
	KeyFile  string `json:"keyFile,omitempty" yaml:"keyFile,omitempty"`
}

// EtcdLatestFrom picks the newest snapshot a team already makes: from a directory or an S3
// bucket (exactly one). Newest is by modification time (S3: LastModified); the age of that
// snapshot is the RPO.
type EtcdLatestFrom struct {
	Dir string `json:"dir,omitempty" yaml:"dir,omitempty"`
	// Pattern is a glob over file names in Dir or object names under the S3 prefix. Default "*.db".
	Pattern  string    `json:"pattern,omitempty" yaml:"pattern,omitempty"`
	S3       *S3Source `json:"s3,omitempty" yaml:"s3,omitempty"`
	Sampling `json:",inline" yaml:",inline"`
}

// Sampling says which of a source's backups a drill restores: the newest (the default), or one
// at random, so that over many drills older backups are restore-tested too. A Window bounds the
// candidates by age; none within it fails the drill (there is no backup to drill).
type Sampling struct {
	// Select is latest (default) or random.
	Select SelectMethod `json:"select,omitempty" yaml:"select,omitempty"`
	// Window keeps the backups made within it before now (a file's mtime, an object's
	// LastModified, a Velero backup's start). Nil: no window.
	Window *Duration `json:"window,omitempty" yaml:"window,omitempty"`
}

// SelectMethod values.
type SelectMethod string

const (
	SelectLatest SelectMethod = "latest"
	SelectRandom SelectMethod = "random"
)

// S3Source is an S3 (or S3-compatible) bucket and prefix. Credentials come from the standard
// AWS environment variables or shared credentials file, never from the scenario.
type S3Source struct {
	Bucket string `json:"bucket" yaml:"bucket"`
	Prefix string `json:"prefix,omitempty" yaml:"prefix,omitempty"`
	// Endpoint for S3-compatible servers (http://minio:9000). Empty: AWS.
	Endpoint string `json:"endpoint,omitempty" yaml:"endpoint,omitempty"`
	Region   string `json:"region,omitempty" yaml:"region,omitempty"`
	// ForcePathStyle addresses the bucket in the path, as most S3-compatible servers need.
	ForcePathStyle bool `json:"forcePathStyle,omitempty" yaml:"forcePathStyle,omitempty"`
	// CredentialsFile is an AWS shared credentials file ([default] aws_access_key_id=...).
	// Empty: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, then ~/.aws/credentials.
	CredentialsFile string `json:"credentialsFile,omitempty" yaml:"credentialsFile,omitempty"`
}

// Restore holds exactly one restore target.
type Restore struct {
	ScratchEtcd *ScratchEtcd `json:"scratchEtcd,omitempty" yaml:"scratchEtcd,omitempty"`
	// Velero backups restore into scratch namespaces of the source cluster, a second cluster whose
	// Velero reads the same storage location, or an ephemeral kind cluster.
	ScratchNamespace *ScratchNamespace `json:"scratchNamespace,omitempty" yaml:"scratchNamespace,omitempty"`
	Cluster          *ClusterTarget    `json:"cluster,omitempty" yaml:"cluster,omitempty"`
	Kind             *KindTarget       `json:"kind,omitempty" yaml:"kind,omitempty"`
	// Order restores a Velero backup in groups, one after another, in one run: each group's
	// namespaces are restored and its checks pass before the next group starts — a database
	// before the application that needs it. A group that does not restore or pass stops the run
	// there, and the record names it. Without it, every namespace is restored at once.
	Order []RestoreGroup `json:"order,omitempty" yaml:"order,omitempty"`
}

// RestoreGroup is one step of an ordered restore.
type RestoreGroup struct {
	// Name names the group in the record ("database"); lowercase letters, digits and '-'.
	Name string `json:"name" yaml:"name"`
	// Namespaces are backed-up namespaces, each in one group only. With backup.velero.create,
	// every included namespace must be in a group; with a backup that exists, the namespaces no
	// group names are not restored.
	Namespaces []string `json:"namespaces" yaml:"namespaces"`
	// Checks run once the group is restored, before the next group starts; spec.checks run after
	// the last group. By default a check looks at the group's first namespace.
	Checks []Check `json:"checks,omitempty" yaml:"checks,omitempty"`
}

// ScratchNamespace restores a Velero backup into new namespaces of the source cluster that
// firedrill creates, labels and isolates itself; cluster-scoped resources are never restored.
type ScratchNamespace struct {
	// NamespaceMapping names the scratch namespace of each backed-up namespace: a template with
	// {{.RunID}}, {{.Namespace}} and {{.Scenario}}. Default for every namespace in the backup:
	// "drill-{{.RunID}}-{{.Namespace}}" (shortened to 63 characters). A mapping onto a namespace
	// that exists is refused before anything is written.
	NamespaceMapping map[string]string `json:"namespaceMapping,omitempty" yaml:"namespaceMapping,omitempty"`
	Isolation        Isolation         `json:"isolation,omitempty" yaml:"isolation,omitempty"`
}

// Isolation keeps a restored copy from acting like production. It is applied before anything is
// restored; see docs/architecture.md#safety-rules.
type Isolation struct {
	// DenyNetwork adds a default-deny NetworkPolicy (ingress and egress). Default true.
	DenyNetwork *bool `json:"denyNetwork,omitempty" yaml:"denyNetwork,omitempty"`
	// AllowDNS lets pods reach DNS (UDP/TCP 53) through the deny policy. Default false.
	AllowDNS bool `json:"allowDNS,omitempty" yaml:"allowDNS,omitempty"`
	// Quota is a ResourceQuota per scratch namespace. Default cpu 4, memory 8Gi, pods 50.
	Quota *Quota `json:"quota,omitempty" yaml:"quota,omitempty"`
	// SuspendCronJobs restores CronJobs suspended. Default true.
	SuspendCronJobs *bool `json:"suspendCronJobs,omitempty" yaml:"suspendCronJobs,omitempty"`
	// ExcludeResources are excluded from the restore in addition to those always excluded
	// (Ingresses, Gateway API routes, HorizontalPodAutoscalers). Velero's resource names, e.g.
	// "ingresses.networking.k8s.io".
	ExcludeResources []string `json:"excludeResources,omitempty" yaml:"excludeResources,omitempty"`
}

// Quota limits a scratch namespace. Quantities as Kubernetes writes them ("4", "8Gi", "50").
type Quota struct {
	CPU    string `json:"cpu,omitempty" yaml:"cpu,omitempty"`
	Memory string `json:"memory,omitempty" yaml:"memory,omitempty"`
	Pods   string `json:"pods,omitempty" yaml:"pods,omitempty"`
}

// ClusterTarget restores into a second cluster whose Velero reads the source's storage location
// (typically in ReadOnly mode). The same scratch-namespace rules and isolation apply there.
type ClusterTarget struct {
	// Kubeconfig of the second cluster, relative to the scenario file. Required; looked for at
	// the drill's preflight, like spec.source.kubeconfig, not at validation.
	Kubeconfig string `json:"kubeconfig" yaml:"kubeconfig"`
	Context    string `json:"context,omitempty" yaml:"context,omitempty"`
	// VeleroNamespace in the second cluster. Default "velero".
	VeleroNamespace string `json:"veleroNamespace,omitempty" yaml:"veleroNamespace,omitempty"`
	// NamespaceMapping as ScratchNamespace's, except that a name without {{.RunID}} is allowed:
	// the second cluster is not production, though a fixed name still refuses to run twice at once.
	NamespaceMapping map[string]string `json:"namespaceMapping,omitempty" yaml:"namespaceMapping,omitempty"`
	Isolation        Isolation         `json:"isolation,omitempty" yaml:"isolation,omitempty"`
}

// KindTarget restores into an ephemeral kind cluster, created for the run and deleted after it,
// with Velero installed from these settings and pointed at the source's storage location. It
// needs a container engine (Docker or Podman) where firedrill runs.
type KindTarget struct {
	// Name of the kind cluster. Empty (the default) means "firedrill-<run id>", filled in at run time.
	Name string `json:"name,omitempty" yaml:"name,omitempty"`
	// Image is the kind node image, e.g. kindest/node:v1.36.3. Default: kind's own default.
	Image  string     `json:"image,omitempty" yaml:"image,omitempty"`
	Velero KindVelero `json:"velero" yaml:"velero"`
	// NamespaceMapping as ClusterTarget's.
	NamespaceMapping map[string]string `json:"namespaceMapping,omitempty" yaml:"namespaceMapping,omitempty"`
	// Isolation applies in the kind cluster too: a restored app keeps production's Secrets, and
	// from a laptop or CI runner it can still reach production databases and APIs. kindnet
	// enforces NetworkPolicy from kind v0.24.
	Isolation Isolation `json:"isolation,omitempty" yaml:"isolation,omitempty"`
}

// KindVelero is the Velero installed into a kind target, reading the backups' storage location.
type KindVelero struct {
	// Image of the Velero server. Default velero/velero:v1.18.3.
	Image string `json:"image,omitempty" yaml:"image,omitempty"`
	// Plugins are plugin images. Default velero/velero-plugin-for-aws:v1.14.3.
	Plugins []string `json:"plugins,omitempty" yaml:"plugins,omitempty"`
	// Provider, Bucket, Prefix and Config describe the BackupStorageLocation (as in Velero's BSL).
	Provider string            `json:"provider" yaml:"provider"`
	Bucket   string            `json:"bucket" yaml:"bucket"`
	Prefix   string            `json:"prefix,omitempty" yaml:"prefix,omitempty"`
	Config   map[string]string `json:"config,omitempty" yaml:"config,omitempty"`
	// CredentialsFile is the cloud credentials file Velero gets (as `velero install --secret-file`).
	// Relative to the scenario file; firedrill reads it, so it must exist at validation.
	CredentialsFile string `json:"credentialsFile" yaml:"credentialsFile"`
}

// ScratchEtcd restores an etcd snapshot into a throwaway etcd on loopback, optionally served
// through a throwaway kube-apiserver. Nothing of the source cluster is touched.
type ScratchEtcd struct {
	// BumpRevision is added to the restored revision, and the old revisions marked compacted, as
	// `etcdutl snapshot restore --bump-revision --mark-compacted` does. Default 1000000000.
	BumpRevision *uint64 `json:"bumpRevision,omitempty" yaml:"bumpRevision,omitempty"`
	// APIServer serves the restored data through a real kube-apiserver, for objectsServed.
	APIServer *ScratchAPIServer `json:"apiServer,omitempty" yaml:"apiServer,omitempty"`
	// EncryptionConfig is the source cluster's EncryptionConfiguration file, so that values
	// encrypted at rest can be decoded and served. Relative to the scenario file.
	EncryptionConfig string `json:"encryptionConfig,omitempty" yaml:"encryptionConfig,omitempty"`
}

// ScratchAPIServer is a kube-apiserver started on the restored etcd.
type ScratchAPIServer struct {
	// Binary of kube-apiserver: a path, or a name looked up in firedrill's bin directory, then PATH.
	// Default "kube-apiserver". `firedrill run --kube-apiserver` overrides it.
	Binary string `json:"binary,omitempty" yaml:"binary,omitempty"`
}

// Check is one named check; exactly one of its type fields is set.
type Check struct {
	// Name is shown in results. Default: the check's type.
	Name string `json:"name,omitempty" yaml:"name,omitempty"`

	EtcdIntegrity     *EtcdIntegrityCheck     `json:"etcdIntegrity,omitempty" yaml:"etcdIntegrity,omitempty"`
	EtcdObjectsDecode *EtcdObjectsDecodeCheck `json:"etcdObjectsDecode,omitempty" yaml:"etcdObjectsDecode,omitempty"`
	EtcdKeys          *EtcdKeysCheck          `json:"etcdKeys,omitempty" yaml:"etcdKeys,omitempty"`
	EtcdMatchesLive   *EtcdMatchesLiveCheck   `json:"etcdMatchesLive,omitempty" yaml:"etcdMatchesLive,omitempty"`
	ObjectsServed     *ObjectsServedCheck     `json:"objectsServed,omitempty" yaml:"objectsServed,omitempty"`
	Canary            *CanaryCheck            `json:"canary,omitempty" yaml:"canary,omitempty"`
	ObjectsRestored   *ObjectsRestoredCheck   `json:"objectsRestored,omitempty" yaml:"objectsRestored,omitempty"`
	ObjectsMatch      *ObjectsMatchCheck      `json:"objectsMatch,omitempty" yaml:"objectsMatch,omitempty"`
	WorkloadsReady    *WorkloadsReadyCheck    `json:"workloadsReady,omitempty" yaml:"workloadsReady,omitempty"`
	Job               *JobCheck               `json:"job,omitempty" yaml:"job,omitempty"`
	VolumeData        *VolumeDataCheck        `json:"volumeData,omitempty" yaml:"volumeData,omitempty"`
	HTTP              *HTTPCheck              `json:"http,omitempty" yaml:"http,omitempty"`
	TCP               *TCPCheck               `json:"tcp,omitempty" yaml:"tcp,omitempty"`
	Exec              *ExecCheck              `json:"exec,omitempty" yaml:"exec,omitempty"`
	Isolation         *IsolationCheck         `json:"isolation,omitempty" yaml:"isolation,omitempty"`
}

// Check type names, as written in scenario files and recorded in results.
const (
	CheckEtcdIntegrity     = "etcdIntegrity"
	CheckEtcdObjectsDecode = "etcdObjectsDecode"
	CheckEtcdKeys          = "etcdKeys"
	CheckEtcdMatchesLive   = "etcdMatchesLive"
	CheckObjectsServed     = "objectsServed"
	CheckCanary            = "canary"
	CheckObjectsRestored   = "objectsRestored"
	CheckObjectsMatch      = "objectsMatch"
	CheckWorkloadsReady    = "workloadsReady"
	CheckJob               = "job"
	CheckVolumeData        = "volumeData"
	CheckHTTP              = "http"
	CheckTCP               = "tcp"
	CheckExec              = "exec"
	CheckIsolation         = "isolation"
)

// EtcdIntegrityCheck verifies the snapshot's appended SHA-256 and that etcd can read it. A raw
// db copy without the hash fails unless AllowMissingHash.
type EtcdIntegrityCheck struct {
	AllowMissingHash bool `json:"allowMissingHash,omitempty" yaml:"allowMissingHash,omitempty"`
}

// EtcdObjectsDecodeCheck decodes every value under Prefix with Kubernetes' codecs (protobuf for
// built-in types, JSON for custom resources). Values encrypted at rest are counted as encrypted
// unless restore.scratchEtcd.encryptionConfig lets them be decrypted.
type EtcdObjectsDecodeCheck struct {
	// Prefix of the keys to decode. Default "/registry/".
	Prefix string `json:"prefix,omitempty" yaml:"prefix,omitempty"`
	// AllowEncrypted passes the check when values are encrypted and no key is configured;
	// otherwise such values fail it, since nothing proves they decode.
	AllowEncrypted bool `json:"allowEncrypted,omitempty" yaml:"allowEncrypted,omitempty"`
}

// EtcdKeysCheck counts the keys under Prefix in the restored etcd.
type EtcdKeysCheck struct {
	Prefix string `json:"prefix" yaml:"prefix"`
	Min    *int   `json:"min,omitempty" yaml:"min,omitempty"`
	Max    *int   `json:"max,omitempty" yaml:"max,omitempty"`
	Equals *int   `json:"equals,omitempty" yaml:"equals,omitempty"`
}

// EtcdMatchesLiveCheck compares, per prefix, the keys and value digests of the restored data with
// the live etcd: at the snapshot's revision when the live store still has it (then they must be
// identical), else against current data, reporting the drift.
type EtcdMatchesLiveCheck struct {
	Prefixes []string `json:"prefixes" yaml:"prefixes"`
	// MaxDrift is the largest share of keys (0..1) that may differ when only current live data can
	// be compared. Default 0.05.
	MaxDrift *float64 `json:"maxDrift,omitempty" yaml:"maxDrift,omitempty"`
}

// ObjectsServedCheck asks the scratch kube-apiserver for the objects the snapshot holds: it must
// be ready, discovery must work and every object of the snapshot in Namespaces (all when empty)
// must be served.
type ObjectsServedCheck struct {
	Namespaces []string `json:"namespaces,omitempty" yaml:"namespaces,omitempty"`
}

// CanaryCheck proves the backup holds the newest writes. With backup.etcd.take it writes a key to
// the live etcd just before the snapshot and expects it after the restore. With
// backup.velero.create it writes a ConfigMap "firedrill-canary" holding a fresh nonce into each
// included namespace just before the backup and expects each to come back with its nonce.
// Other backups cannot have a canary.
type CanaryCheck struct {
	// Key to write (etcd only). Default "/firedrill/canary/<scenario name>".
	Key string `json:"key,omitempty" yaml:"key,omitempty"`
}

// ObjectsRestoredCheck (Velero): every item of the backup's resource list exists in the target,
// namespaces mapped; counted per resource, missing and extra items listed. Items the isolation
// excluded on purpose are not missing.
type ObjectsRestoredCheck struct{}

// ObjectsMatchCheck (Velero): for Resources (default configmaps and secrets), each restored
// object equals the backed-up one after removing what legitimately changes (uid, resourceVersion,
// timestamps, clusterIP, status, managed fields, Velero's labels and what the isolation changed).
// Secrets are compared by digest; their values never appear in results.
type ObjectsMatchCheck struct {
	Resources []string `json:"resources,omitempty" yaml:"resources,omitempty"`
	// IgnoreFields are more paths to leave out of the comparison, e.g. "metadata.annotations.checksum".
	IgnoreFields []string `json:"ignoreFields,omitempty" yaml:"ignoreFields,omitempty"`
}

// WorkloadsReadyCheck (Velero): Deployments, StatefulSets and DaemonSets reach their ready
// replicas, Pods are not crash-looping or unschedulable, PVCs are Bound and Jobs complete within
// Timeout (default 10m); on failure the blocking objects are named.
type WorkloadsReadyCheck struct {
	Timeout Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
}

// JobCheck (Velero): runs a Job in a scratch namespace and passes when it succeeds; its logs are
// kept as evidence (e.g. a query the restored database answers).
type JobCheck struct {
	Image   string   `json:"image" yaml:"image"`
	Command []string `json:"command,omitempty" yaml:"command,omitempty"`
	Args    []string `json:"args,omitempty" yaml:"args,omitempty"`
	Env     []EnvVar `json:"env,omitempty" yaml:"env,omitempty"`
	// Namespace is the backed-up namespace whose scratch copy the Job runs in; default the first.
	Namespace string `json:"namespace,omitempty" yaml:"namespace,omitempty"`
	// Timeout for the Job to finish. Default 5m.
	Timeout Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
}

// VolumeDataCheck (Velero): the files of each restored pod volume equal the backed-up ones. When
// firedrill makes the backup (create), it takes a manifest — every file's path, size and SHA-256 —
// of each persistent volume just before the backup, from a short-lived read-only pod, and compares
// the restored volume with it; a volume the backup left out (Velero's opt-out annotation, no
// file-system backup) comes back empty and fails the check by name. For a backup firedrill did not
// make, the restored volume is compared with what Velero's PodVolumeBackup recorded (its bytes).
type VolumeDataCheck struct {
	// Volumes to compare. Default: every persistent volume of the backed-up pods, and every volume
	// Velero backed up with its file-system backup.
	Volumes []VolumeRef `json:"volumes,omitempty" yaml:"volumes,omitempty"`
	// Ignore are globs over paths inside a volume to leave out: files a running application rewrites
	// between the manifest and the backup ("*-wal", "lost+found").
	Ignore []string `json:"ignore,omitempty" yaml:"ignore,omitempty"`
	// Timeout for reading the restored volumes. Default 10m.
	Timeout Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
}

// VolumeRef names pod volumes in a backed-up namespace.
type VolumeRef struct {
	// Namespace is the backed-up namespace; default every one.
	Namespace string `json:"namespace,omitempty" yaml:"namespace,omitempty"`
	// Pod is a pod name or a glob ("db-*"); default every pod.
	Pod string `json:"pod,omitempty" yaml:"pod,omitempty"`
	// Volume is the volume's name in the pod spec.
	Volume string `json:"volume" yaml:"volume"`
}

// HTTPCheck (Velero): a GET to a restored Service, made from a short-lived probe pod inside the
// scratch namespace (where its NetworkPolicy lets it through), retried until the answer is as
// expected or Timeout passes. Redirects are not followed. Evidence: status, what answered, the
// body's digest and first bytes.
type HTTPCheck struct {
	// Namespace is the backed-up namespace whose scratch copy holds Service; default the first.
	Namespace string `json:"namespace,omitempty" yaml:"namespace,omitempty"`
	Service   string `json:"service" yaml:"service"`
	// Port of the Service; default its first port.
	Port int32 `json:"port,omitempty" yaml:"port,omitempty"`
	// Path and query, default "/".
	Path   string     `json:"path,omitempty" yaml:"path,omitempty"`
	Scheme string     `json:"scheme,omitempty" yaml:"scheme,omitempty"` // http (default) or https, certificates unchecked
	Expect HTTPExpect `json:"expect,omitempty" yaml:"expect,omitempty"`
	// Timeout for the answer to be as expected. Default 2m.
	Timeout Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
}

// HTTPExpect is what an http check's answer must be.
type HTTPExpect struct {
	// Status code; default 200.
	Status int `json:"status,omitempty" yaml:"status,omitempty"`
	// BodyPattern is a regular expression (Go syntax) the body must match, e.g. '"count":\s*42'.
	BodyPattern string `json:"bodyPattern,omitempty" yaml:"bodyPattern,omitempty"`
}

// TCPCheck (Velero): a connection to a restored Service from a probe pod inside the scratch
// namespace, retried until it connects or Timeout passes.
type TCPCheck struct {
	Namespace string `json:"namespace,omitempty" yaml:"namespace,omitempty"`
	Service   string `json:"service" yaml:"service"`
	Port      int32  `json:"port,omitempty" yaml:"port,omitempty"`
	// Timeout for a connection to succeed. Default 2m.
	Timeout Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
}

// ExecCheck (Velero): runs a command in a container of a restored pod and passes when its exit code
// (and output) is as expected — a query the restored database answers with its own tools.
type ExecCheck struct {
	Namespace string `json:"namespace,omitempty" yaml:"namespace,omitempty"`
	// Pod is a pod name or a glob ("db-*"): the first running pod it matches. Or Selector.
	Pod      string            `json:"pod,omitempty" yaml:"pod,omitempty"`
	Selector map[string]string `json:"selector,omitempty" yaml:"selector,omitempty"`
	// Container; default the pod's first.
	Container string     `json:"container,omitempty" yaml:"container,omitempty"`
	Command   []string   `json:"command" yaml:"command"`
	Expect    ExecExpect `json:"expect,omitempty" yaml:"expect,omitempty"`
	// Timeout for a running pod to be found and the command to finish. Default 2m.
	Timeout Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
}

// ExecExpect is what an exec check's command must give.
type ExecExpect struct {
	// ExitCode; default 0.
	ExitCode *int `json:"exitCode,omitempty" yaml:"exitCode,omitempty"`
	// OutputPattern is a regular expression its standard output must match.
	OutputPattern string `json:"outputPattern,omitempty" yaml:"outputPattern,omitempty"`
}

// IsolationCheck (Velero, scratchNamespace target): proves the restored copy is cut off from
// production rather than assuming it. From a probe pod in the scratch namespace it connects to a
// Service of the live application, which must not answer, and to the same Service's scratch
// copy, which must: a cluster whose network plugin does not enforce NetworkPolicy fails it.
type IsolationCheck struct {
	// Namespace, Service and Port name the live application to try; default the first Service of
	// the backup with a port.
	Namespace string `json:"namespace,omitempty" yaml:"namespace,omitempty"`
	Service   string `json:"service,omitempty" yaml:"service,omitempty"`
	Port      int32  `json:"port,omitempty" yaml:"port,omitempty"`
	// Timeout is how long the copy is given to answer, and how long a connection to production may
	// hang before it counts as blocked. Default 1m.
	Timeout Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
}

// EnvVar is an environment variable of a job check: a plain Value, which plans and evidence show,
// or ValueFrom a restored Secret, which they never show (a database password belongs there).
type EnvVar struct {
	Name  string `json:"name" yaml:"name"`
	Value string `json:"value" yaml:"value"`
	// ValueFrom takes the value from a Secret restored into the job's scratch namespace. Not
	// together with a non-empty Value.
	ValueFrom *EnvVarSource `json:"valueFrom,omitempty" yaml:"valueFrom,omitempty"`
}

// EnvVarSource is where a job check's variable comes from, as Kubernetes' EnvVarSource.
type EnvVarSource struct {
	SecretKeyRef *SecretKeyRef `json:"secretKeyRef,omitempty" yaml:"secretKeyRef,omitempty"`
}

// SecretKeyRef is one key of a Secret, named as in the backup; the Job reads the restored copy
// in its scratch namespace, never the source's.
type SecretKeyRef struct {
	Name string `json:"name" yaml:"name"`
	Key  string `json:"key" yaml:"key"`
}

// Cleanup says what happens to scratch resources after a run.
type Cleanup struct {
	// Policy: Always (default), OnSuccess (keep them to investigate a failure) or Never.
	Policy CleanupPolicy `json:"policy,omitempty" yaml:"policy,omitempty"`
	// KeepFor bounds how long kept resources live before the janitor removes them. Default 24h.
	KeepFor Duration `json:"keepFor,omitempty" yaml:"keepFor,omitempty"`
}

// CleanupPolicy values.
type CleanupPolicy string

const (
	CleanupAlways    CleanupPolicy = "Always"
	CleanupOnSuccess CleanupPolicy = "OnSuccess"
	CleanupNever     CleanupPolicy = "Never"
)
