package scenarios

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// The Velero many-mistakes file: each rule it breaks is reported, on its own line.
func TestValidateReportsEveryVeleroProblem(t *testing.T) {
	t.Parallel()
	_, err := Load("testdata/invalid-velero-many.yaml")
	fields := map[string]int{}
	for _, p := range Problems(err) {
		fields[p.Field]++
		if p.Line == 0 {
			t.Errorf("problem without a line: %v", p)
		}
	}
	c := "spec.backup.velero.create"
	iso := "spec.restore.scratchNamespace.isolation"
	for _, want := range []string{
		"spec.backup.velero.namespace",
		c + ".includedNamespaces[0]", c + ".includedNamespaces[2]", c + ".includedNamespaces[3]",
		c + ".excludedNamespaces[0]", c + ".excludedNamespaces[1]",
		c + ".includedResources[0]", c + ".includedResources[2]", c + ".excludedResources[0]",
		c + ".labelSelector.matchLabels[-bad]", c + ".labelSelector.matchLabels[app]",
		c + ".labelSelector.matchExpressions[0].values", c + ".labelSelector.matchExpressions[1].values",
		c + ".labelSelector.matchExpressions[2].key", c + ".labelSelector.matchExpressions[2].operator",
		c + ".labelSelector.matchExpressions[2].values[0]",
		c + ".storageLocation", c + ".ttl",
		"spec.restore.scratchNamespace.namespaceMapping[other]",
		iso + ".allowDNS", iso + ".quota.cpu", iso + ".quota.memory", iso + ".quota.pods",
		iso + ".excludeResources[0]", iso + ".excludeResources[1]",
		"spec.checks[0].canary", "spec.checks[0].canary.key",
		"spec.checks[1].objectsMatch.resources[0]", "spec.checks[1].objectsMatch.resources[1]",
		"spec.checks[2].objectsMatch.resources[0]", "spec.checks[2].objectsMatch.resources[1]",
		"spec.checks[2].objectsMatch.resources[2]",
		"spec.checks[3].workloadsReady.timeout", "spec.checks[4].workloadsReady.timeout",
		"spec.checks[5].job.image", "spec.checks[5].job.timeout", "spec.checks[5].job.namespace",
		"spec.checks[5].job.env[0].name", "spec.checks[5].job.env[2].name", "spec.checks[5].job.env[3].name",
		"spec.checks[5].job.env[4]", "spec.checks[5].job.env[4].valueFrom.secretKeyRef.name",
		"spec.checks[5].job.env[4].valueFrom.secretKeyRef.key", "spec.checks[5].job.env[5].valueFrom",
		"spec.checks[5].job.env[6].valueFrom.secretKeyRef.name", "spec.checks[5].job.env[6].valueFrom.secretKeyRef.key",
		"spec.checks[6].job.image", "spec.checks[6].job.namespace", "spec.checks[6].job.timeout",
		"spec.checks[7].etcdKeys", "spec.checks[8].objectsServed",
	} {
		if fields[want] == 0 {
			t.Errorf("no problem reported for %s", want)
		}
	}
	// Two rules broken at once are two problems.
	if n := fields["spec.restore.scratchNamespace.namespaceMapping[fixed]"]; n != 2 {
		t.Errorf("namespaceMapping[fixed]: %d problems, want 2 (not backed up, no {{.RunID}})", n)
	}
	for i := range 9 {
		if fields["spec.checks[2].objectsMatch.ignoreFields["+string(rune('0'+i))+"]"] != 1 {
			t.Errorf("ignoreFields[%d]: not reported once", i)
		}
	}
}

// Fields left unset count as their defaults: a Velero scenario built in code is valid before
// SetDefaults as after, and the defaults are the documented ones.
func TestVeleroDefaults(t *testing.T) {
	t.Parallel()
	s := &Scenario{
		APIVersion: APIVersion, Kind: Kind,
		Metadata: Metadata{Name: "shop"},
		Spec: Spec{
			Backup:  Backup{Velero: &VeleroBackup{Create: &VeleroCreate{IncludedNamespaces: []string{"shop"}}}},
			Restore: Restore{ScratchNamespace: &ScratchNamespace{Isolation: Isolation{Quota: &Quota{Memory: "16Gi"}}}},
			Checks: []Check{
				{Canary: &CanaryCheck{}},
				{ObjectsRestored: &ObjectsRestoredCheck{}},
				{ObjectsMatch: &ObjectsMatchCheck{}},
				{WorkloadsReady: &WorkloadsReadyCheck{}},
				{Job: &JobCheck{Image: "busybox"}},
			},
		},
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("before SetDefaults: %v", err)
	}
	s.SetDefaults()
	if err := s.Validate(); err != nil {
		t.Fatalf("after SetDefaults: %v", err)
	}
	sp := s.Spec
	iso := sp.Restore.ScratchNamespace.Isolation
	for _, c := range []struct {
		what      string
		got, want any
	}{
		{"velero.namespace", sp.Backup.Velero.Namespace, "velero"},
		{"create.ttl", sp.Backup.Velero.Create.TTL.Duration, 24 * time.Hour},
		{"create.snapshotVolumes", *sp.Backup.Velero.Create.SnapshotVolumes, false},
		{"isolation.denyNetwork", *iso.DenyNetwork, true},
		{"isolation.allowDNS", iso.AllowDNS, false},
		{"isolation.suspendCronJobs", *iso.SuspendCronJobs, true},
		{"isolation.quota", *iso.Quota, Quota{CPU: "4", Memory: "16Gi", Pods: "50"}},
		{"namespaceMapping", sp.Restore.ScratchNamespace.NamespaceMapping, map[string]string(nil)},
		{"canary name", sp.Checks[0].Name, "canary"},
		{"velero canary key", sp.Checks[0].Canary.Key, ""},
		{"objectsRestored name", sp.Checks[1].Name, "objectsRestored"},
		{"objectsMatch name", sp.Checks[2].Name, "objectsMatch"},
		// Left empty: the check compares the defaults leniently (see SetDefaults).
		{"objectsMatch.resources", sp.Checks[2].ObjectsMatch.Resources, []string(nil)},
		{"workloadsReady name", sp.Checks[3].Name, "workloadsReady"},
		{"workloadsReady.timeout", sp.Checks[3].WorkloadsReady.Timeout.Duration, 10 * time.Minute},
		{"job name", sp.Checks[4].Name, "job"},
		{"job.timeout", sp.Checks[4].Job.Timeout.Duration, 5 * time.Minute},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}

	// The default list is not shared between callers.
	DefaultObjectsMatchResources()[0] = "changed"
	if DefaultObjectsMatchResources()[0] != "configmaps" {
		t.Error("the default objectsMatch resources can be changed through a caller")
	}

	// The other targets.
	c := &Scenario{Spec: Spec{Restore: Restore{Cluster: &ClusterTarget{}}}}
	c.SetDefaults()
	if got := c.Spec.Restore.Cluster; got.VeleroNamespace != "velero" || !*got.Isolation.DenyNetwork || got.Isolation.Quota.Pods != "50" {
		t.Errorf("cluster defaults: %+v", got)
	}
	k := &Scenario{Spec: Spec{Restore: Restore{Kind: &KindTarget{}}}}
	k.SetDefaults()
	kt := k.Spec.Restore.Kind
	if kt.Name != "" || kt.Velero.Image != "velero/velero:v1.18.3" ||
		!slices.Equal(kt.Velero.Plugins, []string{"velero/velero-plugin-for-aws:v1.14.3"}) ||
		!*kt.Isolation.SuspendCronJobs || kt.Isolation.Quota.CPU != "4" {
		t.Errorf("kind defaults: %+v", kt)
	}
	// Explicit false stays false.
	f := false
	e := &Scenario{Spec: Spec{
		Backup:  Backup{Velero: &VeleroBackup{Create: &VeleroCreate{SnapshotVolumes: ptr(true)}}},
		Restore: Restore{ScratchNamespace: &ScratchNamespace{Isolation: Isolation{DenyNetwork: &f, SuspendCronJobs: &f}}},
	}}
	e.SetDefaults()
	if iso := e.Spec.Restore.ScratchNamespace.Isolation; *iso.DenyNetwork || *iso.SuspendCronJobs || !*e.Spec.Backup.Velero.Create.SnapshotVolumes {
		t.Errorf("explicit values overridden: %+v", iso)
	}
}

func TestRenderNamespace(t *testing.T) {
	t.Parallel()
	d := NamespaceData{RunID: SampleRunID, Namespace: "shop", Scenario: "drill"}
	for tmpl, want := range map[string]string{
		DefaultNamespaceTemplate:            "drill-20261127-101530-7f3a9c-shop",
		"{{ .Scenario }}-{{- .Namespace }}": "drill-shop",
		"fixed":                             "fixed",
	} {
		if got, err := RenderNamespace(tmpl, d); err != nil || got != want {
			t.Errorf("RenderNamespace(%q) = %q, %v; want %q", tmpl, got, err, want)
		}
	}
	for _, tmpl := range []string{
		"", "{{.RunID", "{{.Other}}", "{{.RunID.X}}", "{{printf \"%s\" .RunID}}", "{{.RunID | print}}",
		"{{$x := .RunID}}{{$x}}", "{{if .RunID}}a{{end}}", "{{range .RunID}}{{end}}", "{{with .RunID}}{{.}}{{end}}",
		"{{template \"x\"}}", "{{define \"x\"}}a{{end}}b", "{{.}}", "{{\"lit\"}}", "{{len .RunID}}",
	} {
		if got, err := RenderNamespace(tmpl, d); err == nil {
			t.Errorf("RenderNamespace(%q) = %q, want an error", tmpl, got)
		}
	}
	if len(SampleRunID) != len("20060102-150405-")+6 {
		t.Errorf("SampleRunID %q has not the shape of a run id", SampleRunID)
	}
}

func TestSplitFieldPath(t *testing.T) {
	t.Parallel()
	for path, want := range map[string][]string{
		"metadata":                             {"metadata"},
		"metadata.annotations.checksum":        {"metadata", "annotations", "checksum"},
		"metadata.labels[app.kubernetes.io/x]": {"metadata", "labels", "app.kubernetes.io/x"},
		"spec.containers[0].image":             {"spec", "containers", "0", "image"},
		"data[a][b]":                           {"data", "a", "b"},
		"a[x.y].b[z]":                          {"a", "x.y", "b", "z"},
	} {
		got, err := SplitFieldPath(path)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("SplitFieldPath(%q) = %q, %v; want %q", path, got, err, want)
		}
	}
	for _, path := range []string{"", ".a", "a.", "a..b", "[a]", "a[", "a[]", "a]", "a[b]c", "a[b[c]]", "a b", "a\tb", "a.[b]"} {
		if got, err := SplitFieldPath(path); err == nil {
			t.Errorf("SplitFieldPath(%q) = %q, want an error", path, got)
		}
	}
}

// The one Velero target rule that differs: fixed names only outside the source cluster.
func TestMappingWithoutRunID(t *testing.T) {
	t.Parallel()
	base := func() *Scenario {
		return &Scenario{
			APIVersion: APIVersion, Kind: Kind, Metadata: Metadata{Name: "m"},
			Spec: Spec{
				Backup: Backup{Velero: &VeleroBackup{Name: "b"}},
				Checks: []Check{{ObjectsRestored: &ObjectsRestoredCheck{}}},
			},
		}
	}
	fixed := map[string]string{"shop": "shop"}
	s := base()
	s.Spec.Restore.ScratchNamespace = &ScratchNamespace{NamespaceMapping: fixed}
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "has no {{.RunID}}") {
		t.Errorf("scratchNamespace with a fixed name: %v", err)
	}
	s = base()
	s.Spec.Restore.Cluster = &ClusterTarget{Kubeconfig: "/dr.yaml", NamespaceMapping: fixed}
	if err := s.Validate(); err != nil {
		t.Errorf("cluster with a fixed name: %v", err)
	}
	s = base()
	s.Spec.Restore.Kind = &KindTarget{NamespaceMapping: fixed, Velero: KindVelero{Provider: "aws", Bucket: "b", CredentialsFile: "testdata/s3-credentials"}}
	if err := s.Validate(); err != nil {
		t.Errorf("kind with a fixed name: %v", err)
	}
}

// Validation stays fast on any input: quantities whose parsing time grows with their exponent are
// refused before they are parsed.
func TestQuantityBounds(t *testing.T) {
	t.Parallel()
	for _, q := range []string{"4", "500m", "8Gi", "1e3", "1E", "8Ei", "+1", "1e-99"} {
		if _, err := parseQuantity(q); err != nil {
			t.Errorf("parseQuantity(%q): %v", q, err)
		}
	}
	for _, q := range []string{"1e-999999999", "1E+100", strings.Repeat("1", 65), "x"} {
		if _, err := parseQuantity(q); err == nil {
			t.Errorf("parseQuantity(%q) accepted", q)
		}
	}
}
