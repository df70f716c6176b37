package velero

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/firedrill-dev/firedrill/internal/testkit"
	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/scenarios"
)

func TestCheckLocationAvailable(t *testing.T) {
	t.Parallel()
	e := sharedEnv(t)
	ctx := ctxFor(t, time.Minute)
	for _, name := range []string{"", sandbox.BackupStorageLocation} {
		info, err := e.velo.CheckLocation(ctx, name)
		if err != nil {
			t.Fatalf("CheckLocation(%q): %v", name, err)
		}
		if info.Name != sandbox.BackupStorageLocation || info.Phase != "Available" || !info.Default || info.Provider != "aws" || info.ReadOnly {
			t.Errorf("CheckLocation(%q) = %+v", name, info)
		}
	}
	_, err := e.velo.CheckLocation(ctx, "no-such-location")
	if !errors.Is(err, ErrLocationUnavailable) || !strings.Contains(err.Error(), "velero/no-such-location not found") {
		t.Errorf("missing location: %v", err)
	}
}

func TestCheckLocationUnavailable(t *testing.T) {
	t.Parallel()
	e := sharedEnv(t)
	ctx := ctxFor(t, 2*time.Minute)
	s3 := e.sb.S3()
	bsl := &velerov1.BackupStorageLocation{
		ObjectMeta: metav1.ObjectMeta{Namespace: sandbox.VeleroNamespace, Name: "broken-" + e.runID},
		Spec: velerov1.BackupStorageLocationSpec{
			Provider:    "aws",
			StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{Bucket: "no-such-bucket-" + e.runID}},
			Config:      map[string]string{"region": s3.Region, "s3ForcePathStyle": "true", "s3Url": s3.URL},
		},
	}
	e.create(t, bsl)
	t.Cleanup(func() { _ = e.kube.Delete(context.Background(), bsl) })
	testkit.Eventually(t, time.Minute, "Velero validates "+bsl.Name, func() error {
		_, err := e.velo.CheckLocation(ctx, bsl.Name)
		if err == nil || strings.Contains(err.Error(), "not been validated") {
			return errors.New("not validated yet")
		}
		return nil
	})
	_, err := e.velo.CheckLocation(ctx, bsl.Name)
	t.Log(err)
	if !errors.Is(err, ErrLocationUnavailable) {
		t.Fatalf("got %v, want ErrLocationUnavailable", err)
	}
	for _, want := range []string{"BackupStorageLocation velero/" + bsl.Name + " is Unavailable: ", "check the bucket and credentials"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

func TestCreateAndWaitBackupReportsProgress(t *testing.T) {
	t.Parallel()
	e := sharedEnv(t)
	ns := e.namespace(t, "shop", nil)
	e.create(t, configMap(ns, "settings", map[string]string{"currency": "EUR"}),
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"}, StringData: map[string]string{"password": "s3cret"}},
		deployment(ns, "web", 1))
	ctx := ctxFor(t, 3*time.Minute)
	name := "create-" + e.runID
	created, err := e.velo.CreateBackup(ctx, name, scenarios.VeleroCreate{IncludedNamespaces: []string{ns}}, map[string]string{"team": "shop"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.cleanupBackup(t, name) })
	if created.Name != name {
		t.Fatalf("created %q", created.Name)
	}
	var (
		mu    sync.Mutex
		calls [][2]int
	)
	info, err := e.velo.WaitBackup(ctx, name, func(done, total int) {
		mu.Lock()
		calls = append(calls, [2]int{done, total})
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("progress calls: %v", calls)
	if len(calls) == 0 {
		t.Fatal("progress never called")
	}
	if last := calls[len(calls)-1]; last[0] != info.ItemsBackedUp || last[1] != info.TotalItems || last[0] == 0 || last[0] != last[1] {
		t.Errorf("last progress %v, info %d/%d", last, info.ItemsBackedUp, info.TotalItems)
	}
	for i := 1; i < len(calls); i++ {
		if calls[i][0] < calls[i-1][0] {
			t.Errorf("progress went backwards: %v", calls)
		}
	}
	if info.Phase != "Completed" || info.Started.IsZero() || info.Completed.Before(info.Started) || info.StorageLocation != sandbox.BackupStorageLocation {
		t.Errorf("info %+v", info)
	}
	if ttl := info.Expiration.Sub(info.Started); ttl < 23*time.Hour || ttl > 25*time.Hour {
		t.Errorf("expiration %s after start, want the default 24h", ttl)
	}
	if !slices.Equal(info.IncludedNamespaces, []string{ns}) {
		t.Errorf("included namespaces %v", info.IncludedNamespaces)
	}
	var b velerov1.Backup
	if err := e.kube.Get(ctx, client.ObjectKey{Namespace: sandbox.VeleroNamespace, Name: name}, &b); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{LabelManagedBy: ManagedBy, LabelRun: e.runID, "team": "shop"} {
		if b.Labels[k] != v {
			t.Errorf("label %s=%q, want %q", k, b.Labels[k], v)
		}
	}
	if b.Spec.SnapshotVolumes == nil || *b.Spec.SnapshotVolumes {
		t.Errorf("snapshotVolumes %v, want false", b.Spec.SnapshotVolumes)
	}
	// GetBackup sees the same.
	got, err := e.velo.GetBackup(ctx, name)
	if err != nil || got.ItemsBackedUp != info.ItemsBackedUp {
		t.Errorf("GetBackup: %+v %v", got, err)
	}
}

func TestListBackups(t *testing.T) {
	t.Parallel()
	e := sharedEnv(t)
	ctx := ctxFor(t, 3*time.Minute)
	ns := e.namespace(t, "nightly", nil)
	e.create(t, configMap(ns, "cfg", map[string]string{"a": "b"}))
	schedule := "nightly-" + e.runID
	sched := &velerov1.Schedule{
		ObjectMeta: metav1.ObjectMeta{Namespace: sandbox.VeleroNamespace, Name: schedule},
		Spec: velerov1.ScheduleSpec{Schedule: "0 3 * * *", Paused: true,
			Template: velerov1.BackupSpec{IncludedNamespaces: []string{ns}}},
	}
	e.create(t, sched)
	t.Cleanup(func() { _ = e.kube.Delete(context.Background(), sched) })

	// Backups as the schedule makes them (velero backup create --from-schedule does the same):
	// two Completed, then a newer one that fails validation.
	fromSchedule := func(name, location string) *velerov1.Backup {
		spec := *sched.Spec.Template.DeepCopy()
		spec.StorageLocation = location
		return &velerov1.Backup{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{velerov1.ScheduleNameLabel: schedule}},
			Spec:       spec,
		}
	}
	older, newer, broken := schedule+"-1", schedule+"-2", schedule+"-3"
	e.rawBackup(t, fromSchedule(older, ""), velerov1.BackupPhaseCompleted)
	e.rawBackup(t, fromSchedule(newer, ""), velerov1.BackupPhaseCompleted)
	e.rawBackup(t, fromSchedule(broken, "no-such-location"), velerov1.BackupPhaseFailedValidation)

	list, err := e.velo.ListBackups(ctx, schedule, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range list {
		got = append(got, b.Name+":"+b.Phase)
		if b.Schedule != schedule || b.Started.IsZero() {
			t.Errorf("listed %+v", b)
		}
		if age := b.Age(time.Now()); age <= 0 || age > 5*time.Minute {
			t.Errorf("%s: age %s", b.Name, age)
		}
	}
	if want := older + ":Completed " + newer + ":Completed " + broken + ":FailedValidation"; strings.Join(got, " ") != want {
		t.Errorf("listed %s, want %s", strings.Join(got, " "), want)
	}
	if list[0].Unusable != "" || list[1].Unusable != "" || !strings.HasPrefix(list[2].Unusable, "FailedValidation") {
		t.Errorf("unusable: %q %q %q, want only %s's (FailedValidation)", list[0].Unusable, list[1].Unusable, list[2].Unusable, broken)
	}
	// The same backups by a label selector; one that matches nothing lists nothing.
	byLabel, err := e.velo.ListBackups(ctx, "", &scenarios.LabelSelector{MatchLabels: map[string]string{velerov1.ScheduleNameLabel: schedule}})
	if err != nil || len(byLabel) != 3 {
		t.Errorf("by selector: %d backups, %v", len(byLabel), err)
	}
	if none, err := e.velo.ListBackups(ctx, "", &scenarios.LabelSelector{MatchLabels: map[string]string{"team": "nobody-" + e.runID}}); err != nil || len(none) != 0 {
		t.Errorf("selector matching nothing: %v, %v", none, err)
	}

	_, err = e.velo.ListBackups(ctx, "no-such-schedule", nil)
	if !errors.Is(err, ErrBackupNotFound) || !strings.Contains(err.Error(), "no Schedule no-such-schedule exists") {
		t.Errorf("unknown schedule: %v", err)
	}
}

func TestExpiredBackupIsRefused(t *testing.T) {
	t.Parallel()
	e := sharedEnv(t)
	ctx := ctxFor(t, 3*time.Minute)
	ns := e.namespace(t, "old", nil)
	e.create(t, configMap(ns, "cfg", nil))
	name := "expired-" + e.runID
	if _, err := e.velo.CreateBackup(ctx, name, scenarios.VeleroCreate{IncludedNamespaces: []string{ns},
		TTL: scenarios.Duration{Duration: time.Second}}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.cleanupBackup(t, name) })
	info, err := e.velo.WaitBackup(ctx, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(info.Expiration.Add(100 * time.Millisecond)))
	_, err = e.velo.GetBackup(ctx, name)
	if !errors.Is(err, ErrBackupExpired) || !strings.Contains(err.Error(), "expired at") {
		t.Fatalf("GetBackup of an expired backup: %v", err)
	}
	t.Log(err)
	scratch := e.scratch(t, "drill")
	_, err = e.velo.Restore(ctx, RestoreOptions{Backup: name, NamespaceMapping: map[string]string{ns: scratch}}, nil)
	if !errors.Is(err, ErrBackupExpired) {
		t.Errorf("Restore of an expired backup: %v", err)
	}
}

func TestUsableRefusesDeletingAndExpired(t *testing.T) {
	t.Parallel()
	now := time.Now()
	c := &Client{namespace: "velero"}
	b := func(mod func(*velerov1.Backup)) *velerov1.Backup {
		b := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: "velero", Name: "b"}}
		b.Status.Phase = velerov1.BackupPhaseCompleted
		mod(b)
		return b
	}
	for name, tc := range map[string]struct {
		b       *velerov1.Backup
		pending map[string]bool
		want    error
	}{
		"fine":             {b(func(*velerov1.Backup) {}), nil, nil},
		"not yet expired":  {b(func(b *velerov1.Backup) { b.Status.Expiration = &metav1.Time{Time: now.Add(time.Hour)} }), nil, nil},
		"expired":          {b(func(b *velerov1.Backup) { b.Status.Expiration = &metav1.Time{Time: now.Add(-time.Hour)} }), nil, ErrBackupExpired},
		"deletion pending": {b(func(*velerov1.Backup) {}), map[string]bool{"b": true}, ErrBackupDeleting},
		"other's deletion": {b(func(*velerov1.Backup) {}), map[string]bool{"other": true}, nil},
		"phase Deleting":   {b(func(b *velerov1.Backup) { b.Status.Phase = velerov1.BackupPhaseDeleting }), nil, ErrBackupDeleting},
		"deletionTimestamp": {b(func(b *velerov1.Backup) {
			b.DeletionTimestamp = &metav1.Time{Time: now}
		}), nil, ErrBackupDeleting},
	} {
		err := c.usable(tc.b, tc.pending, now)
		if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s: got %v, want %v", name, err, tc.want)
		}
	}
}

func TestBackupPartiallyFailedReportsFirstErrors(t *testing.T) {
	t.Parallel()
	e := sharedEnv(t)
	ctx := ctxFor(t, 3*time.Minute)
	ns := e.namespace(t, "volumes", nil)
	// A running pod whose volume is opted in to file-system backup: Velero needs its node-agent on
	// the pod's node for that, and the sandbox runs none, so this item fails for real.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db", Annotations: map[string]string{"backup.velero.io/backup-volumes": "data"}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "db", Image: "postgres:16", VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
			Volumes:    []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	}
	e.create(t, pod, configMap(ns, "cfg", nil))
	testkit.Eventually(t, time.Minute, "pod running", func() error {
		if err := e.kube.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return err
		}
		if pod.Status.Phase != corev1.PodRunning {
			return errors.New(string(pod.Status.Phase))
		}
		return nil
	})
	name := "partial-" + e.runID
	if _, err := e.velo.CreateBackup(ctx, name, scenarios.VeleroCreate{IncludedNamespaces: []string{ns}}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.cleanupBackup(t, name) })
	info, err := e.velo.WaitBackup(ctx, name, nil)
	t.Log(err)
	var be *BackupError
	if !errors.As(err, &be) || !errors.Is(err, ErrBackupFailed) {
		t.Fatalf("got %v, want a *BackupError", err)
	}
	if be.Phase != "PartiallyFailed" || be.Errors < 1 || len(be.FirstErrors) == 0 || be.ResultsErr != nil || info == nil {
		t.Fatalf("error %+v", be)
	}
	// Velero records this error without a namespace, the matching warning with one.
	if want := "velero: db: Error backing up item: daemonset pod not found in running state in node kwok-node-0"; be.FirstErrors[0] != want {
		t.Errorf("first error %q, want %q", be.FirstErrors[0], want)
	}
	if len(be.FirstWarnings) == 0 || !strings.HasPrefix(be.FirstWarnings[0], "namespace "+ns+": pods db: Skip pod volume data: ") {
		t.Errorf("first warnings %q", be.FirstWarnings)
	}
	if be.ItemsBackedUp == 0 || be.TotalItems == 0 {
		t.Errorf("counts %d/%d", be.ItemsBackedUp, be.TotalItems)
	}
}

func TestBackupFailedValidation(t *testing.T) {
	t.Parallel()
	e := sharedEnv(t)
	ctx := ctxFor(t, 2*time.Minute)
	name := "invalid-" + e.runID
	if _, err := e.velo.CreateBackup(ctx, name, scenarios.VeleroCreate{IncludedNamespaces: []string{"default"}, StorageLocation: "no-such-location"}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.cleanupBackup(t, name) })
	_, err := e.velo.WaitBackup(ctx, name, nil)
	var be *BackupError
	if !errors.As(err, &be) || be.Phase != "FailedValidation" || len(be.ValidationErrors) == 0 {
		t.Fatalf("got %v", err)
	}
	if !strings.Contains(err.Error(), "no-such-location") {
		t.Errorf("error does not name the location: %v", err)
	}
}

func TestBackupContentsHoldsEveryObject(t *testing.T) {
	t.Parallel()
	e := sharedEnv(t)
	ns := e.namespace(t, "contents", nil)
	e.create(t, configMap(ns, "settings", map[string]string{"k": "v"}), configMap(ns, "features", nil),
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"}, StringData: map[string]string{"password": "s3cret"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}},
		deployment(ns, "web", 2))
	ctx := ctxFor(t, 3*time.Minute)
	testkit.Eventually(t, time.Minute, "pods", func() error {
		var pods corev1.PodList
		if err := e.kube.List(ctx, &pods, client.InNamespace(ns)); err != nil || len(pods.Items) < 2 {
			return errors.New("waiting for pods")
		}
		return nil
	})
	info := e.backup(t, ns)
	items, err := e.velo.BackupContents(ctx, info.Name)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*Item{}
	for i := range items {
		it := &items[i]
		got[it.Resource+" "+it.Namespace+"/"+it.Name] = it
		if it.Object == nil || it.Object.GetName() != it.Name || it.Object.GetNamespace() != it.Namespace {
			t.Errorf("item %+v does not match its object", it)
		}
	}
	// Every object of the namespace, listed live, is in the backup.
	var want []string
	lists := map[string]client.ObjectList{"configmaps": &corev1.ConfigMapList{}, "secrets": &corev1.SecretList{},
		"services": &corev1.ServiceList{}, "pods": &corev1.PodList{}, "serviceaccounts": &corev1.ServiceAccountList{}}
	for res, l := range lists {
		if err := e.kube.List(ctx, l, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		objs, _ := metaItems(l)
		for _, o := range objs {
			want = append(want, res+" "+ns+"/"+o)
		}
	}
	want = append(want, "deployments.apps "+ns+"/web", "namespaces /"+ns)
	for _, k := range want {
		if got[k] == nil {
			t.Errorf("%s not in the backup's contents", k)
		}
	}
	rs := 0
	for k := range got {
		if strings.HasPrefix(k, "replicasets.apps ") {
			rs++
		}
	}
	if rs != 1 {
		t.Errorf("%d replicasets, want 1", rs)
	}
	if len(items) != info.ItemsBackedUp {
		t.Errorf("%d items in contents, Velero counted %d", len(items), info.ItemsBackedUp)
	}
	if s := got["secrets "+ns+"/db"]; s != nil {
		if v, _, _ := unstructuredString(s.Object.Object, "data", "password"); v == "" {
			t.Errorf("secret data missing from contents")
		}
	}
	list, err := e.velo.BackupResourceList(ctx, info.Name)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(items) {
		t.Errorf("resource list has %d items, contents %d", len(list), len(items))
	}
	if nss := Namespaces(list); !slices.Equal(nss, []string{ns}) {
		t.Errorf("namespaces of the resource list: %v", nss)
	}
}

func metaItems(l client.ObjectList) ([]string, error) {
	var out []string
	switch l := l.(type) {
	case *corev1.ConfigMapList:
		for _, o := range l.Items {
			out = append(out, o.Name)
		}
	case *corev1.SecretList:
		for _, o := range l.Items {
			out = append(out, o.Name)
		}
	case *corev1.ServiceList:
		for _, o := range l.Items {
			out = append(out, o.Name)
		}
	case *corev1.PodList:
		for _, o := range l.Items {
			out = append(out, o.Name)
		}
	case *corev1.ServiceAccountList:
		for _, o := range l.Items {
			out = append(out, o.Name)
		}
	}
	return out, nil
}

func unstructuredString(obj map[string]any, path ...string) (string, bool, error) {
	cur := any(obj)
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false, nil
		}
		cur = m[p]
	}
	s, ok := cur.(string)
	return s, ok, nil
}

func TestDeleteBackupRemovesIt(t *testing.T) {
	t.Parallel()
	e := sharedEnv(t)
	ns := e.namespace(t, "gone", nil)
	e.create(t, configMap(ns, "cfg", nil))
	info := e.backup(t, ns)
	ctx := ctxFor(t, 2*time.Minute)
	if err := e.velo.DeleteBackup(ctx, info.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := e.velo.GetBackup(ctx, info.Name); !errors.Is(err, ErrBackupNotFound) {
		t.Errorf("after DeleteBackup: %v", err)
	}
	var dbrs velerov1.DeleteBackupRequestList
	if err := e.kube.List(ctx, &dbrs, client.InNamespace(sandbox.VeleroNamespace), client.MatchingLabels{LabelRun: e.runID}); err != nil {
		t.Fatal(err)
	}
	if len(dbrs.Items) != 0 {
		t.Errorf("DeleteBackupRequests left: %d", len(dbrs.Items))
	}
	// Its data is gone from the bucket too: Velero cannot make its contents available any more.
	if err := e.velo.DeleteBackup(ctx, info.Name); err != nil {
		t.Errorf("deleting a deleted backup: %v", err)
	}

	// A backup firedrill did not make is never deleted.
	theirs := &velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Name: "theirs-" + e.runID},
		Spec: velerov1.BackupSpec{IncludedNamespaces: []string{ns}, TTL: metav1.Duration{Duration: time.Hour}, SnapshotVolumes: ptr.To(false)}}
	e.rawBackup(t, theirs, velerov1.BackupPhaseCompleted)
	if err := e.velo.DeleteBackup(ctx, theirs.Name); !errors.Is(err, ErrNotOurs) {
		t.Errorf("DeleteBackup of a team's backup: %v", err)
	}
	if _, err := e.velo.GetBackup(ctx, theirs.Name); err != nil {
		t.Errorf("team's backup after refused delete: %v", err)
	}
}

func TestWaitBackupEndsWithTheContext(t *testing.T) {
	t.Parallel()
	e := sharedEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	name := "slow-" + e.runID
	if _, err := e.velo.CreateBackup(context.Background(), name, scenarios.VeleroCreate{IncludedNamespaces: []string{"default"}}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := ctxFor(t, 2*time.Minute)
		_, _ = e.velo.WaitBackup(ctx, name, nil)
		e.cleanupBackup(t, name)
	})
	_, err := e.velo.WaitBackup(ctx, name, nil)
	var nf *NotFinishedError
	if !errors.As(err, &nf) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "backup velero/"+name+" did not finish within") {
		t.Fatalf("got %v", err)
	}
}
