package verify

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/firedrill-dev/firedrill/scenarios"
)

// The job check on kwok's simulated nodes: a Job that completes passes, judged by its status
// although its log cannot be read; a Job whose pod cannot be scheduled, or cannot be created
// under a quota, fails naming why; every Job is deleted afterwards.
func TestJobCheck(t *testing.T) {
	sb := veleroSandbox(t)
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(fastConfig(sb))
	target := func(ns string) *VeleroTarget {
		return &VeleroTarget{Cluster: newTestCluster(t, sb.RESTConfig()), RunID: "run/42", NamespaceMapping: map[string]string{"shop": ns, "zz-other": "elsewhere"}}
	}
	secret := "dsn-" + randomHex(t)
	check := func(t *testing.T, timeout time.Duration) *JobCheck {
		c, err := NewJobCheck("orders readable", scenarios.JobCheck{Image: "postgres:16", Command: []string{"sh", "-c"},
			Args: []string{"psql \"$DSN\" -c 'select count(*) from orders'"}, Env: []scenarios.EnvVar{{Name: "DSN", Value: secret},
				{Name: "PGPASSWORD", ValueFrom: &scenarios.EnvVarSource{SecretKeyRef: &scenarios.SecretKeyRef{Name: "db", Key: "password"}}}},
			Timeout: scenarios.Duration{Duration: timeout}})
		must(t, err)
		return c
	}
	// assertDeleted checks that the Job is gone or going, with its pods.
	assertDeleted := func(t *testing.T, o Outcome) {
		t.Helper()
		if o.Evidence["deleted"] != true {
			t.Errorf("job not deleted: %v", o.Evidence)
		}
		name, ns := o.Evidence["job"].(string), o.Evidence["namespace"].(string)
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			_, err := cs.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
			pods, _ := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=" + name})
			return apierrors.IsNotFound(err) && pods != nil && len(pods.Items) == 0, nil
		})
		if err != nil {
			t.Errorf("job %s/%s or its pods still there: %v", ns, name, err)
		}
	}

	t.Run("completes", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, cs, "vjob")
		// The restored Secret the job reads its password from.
		_, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db"},
			Data: map[string][]byte{"password": []byte(secret)}}, metav1.CreateOptions{})
		must(t, err)
		o := check(t, time.Minute).Run(ctx, target(ns))
		t.Logf("%s: %s", o.Status, o.Message)
		if o.Status != StatusPassed || o.Evidence["result"] != "Complete" || o.Evidence["namespace"] != ns {
			t.Fatalf("want passed in %s, got %s: %s (%v)", ns, o.Status, o.Message, o.Evidence)
		}
		// kwok runs no containers and serves no logs: the verdict comes from the Job's status.
		if o.Evidence["logsError"] == nil || !strings.Contains(o.Message, "no log kept: ") {
			t.Errorf("want the unavailable log recorded, got %v", o.Evidence)
		}
		assertNoSecret(t, o, secret)
		assertDeleted(t, o)
	})

	t.Run("unschedulable", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, cs, "vjob")
		// Every pod of the namespace asks for more CPU than the node has.
		_, err := cs.CoreV1().LimitRanges(ns).Create(ctx, &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "huge"},
			Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{Type: corev1.LimitTypeContainer,
				DefaultRequest: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("64")}}}}}, metav1.CreateOptions{})
		must(t, err)
		o := check(t, 3*time.Second).Run(ctx, target(ns))
		t.Logf("%s: %s", o.Status, o.Message)
		if o.Status != StatusFailed || o.Evidence["result"] != "Failed" || o.Evidence["reason"] != "DeadlineExceeded" {
			t.Fatalf("want failed by the deadline, got %s: %s (%v)", o.Status, o.Message, o.Evidence)
		}
		if !strings.Contains(o.Message, "unschedulable: 0/1 nodes are available: 1 Insufficient cpu") {
			t.Errorf("message does not say the pod is unschedulable: %s", o.Message)
		}
		assertNoSecret(t, o, secret)
		assertDeleted(t, o)
	})

	t.Run("refused by quota", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, cs, "vjob")
		_, err := cs.CoreV1().ResourceQuotas(ns).Create(ctx, &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "isolation"},
			Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi")}}}, metav1.CreateOptions{})
		must(t, err)
		o := check(t, 3*time.Second).Run(ctx, target(ns))
		t.Logf("%s: %s", o.Status, o.Message)
		if o.Status != StatusFailed || !strings.Contains(o.Message, "its pod could not be created: ") || !strings.Contains(o.Message, "failed quota: isolation: must specify cpu") {
			t.Fatalf("want failed naming the quota, got %s: %s", o.Status, o.Message)
		}
		assertDeleted(t, o)
	})

	t.Run("namespace", func(t *testing.T) {
		t.Parallel()
		c, err := NewJobCheck("", scenarios.JobCheck{Image: "busybox", Namespace: "payments"})
		must(t, err)
		o := c.Run(ctx, target("x"))
		if o.Status != StatusError || !strings.Contains(o.Message, "job.namespace payments is not a backed-up namespace of this restore (restored: shop, zz-other)") {
			t.Errorf("got %s: %s", o.Status, o.Message)
		}
	})
}
