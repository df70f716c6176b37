package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/firedrill-dev/firedrill/api/v1alpha1"
	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/jobexec"
	"github.com/firedrill-dev/firedrill/internal/pgtest"
	"github.com/firedrill-dev/firedrill/internal/testkit"
	"github.com/firedrill-dev/firedrill/sandbox"
)

var campaigning = regexp.MustCompile(`msg="campaigning for the Lease[^"]*" identity=(\S+)`)

// TestServeFailoverJobs: two `serve --executor job --leader-elect` replicas, one PostgreSQL, a
// Scenario resource scheduled every 15s and a DrillRun, drills as Jobs on the sandbox's real
// node:
//   - only the leader creates Jobs (annotated firedrill.dev/created-by with its identity) and
//     writes Scenario and DrillRun status (managedFields: firedrill/IDENTITY);
//   - the leader is killed (SIGKILL) while one of its drill Jobs runs: the other replica takes
//     over, adopts that Job — its record goes on from the pod's log and passes — and later
//     scheduled runs pass as Jobs it created;
//   - every fire time has one record, no Job is left running, `history verify` passes.
func TestServeFailoverJobs(t *testing.T) {
	sb, kubectl, ns, endpoint, slow := jobsSandbox(t, "fdfailover")
	// slow keeps a drill in its backup for minutes, long enough to kill the leader in it.
	const name, every = "fo-jobs", "@every 15s"
	kubectl(etcdScenario(name, every, []string{endpoint}, "", false), "-n", ns, "apply", "-f", "-")

	dsn := pgtest.Start(t).NewDatabase(t)
	lease := fmt.Sprintf("firedrill-fojobs-%d", time.Now().UnixNano()%1e9)
	start := func() *serveProc {
		env := []string{"TMPDIR=" + t.TempDir(), "FIREDRILL_TOKEN=", "FIREDRILL_SCENARIOS=", "FIREDRILL_SLACK_WEBHOOK="}
		return startServe(t, env, "--scenarios-from", "cluster", "--scenarios-namespace", ns, "--history", dsn, "--spool-dir", t.TempDir(),
			"--kubeconfig", sb.Kubeconfig(), "--executor", "job", "--job-image", sandbox.FiredrillImage, "--job-namespace", ns,
			"--leader-elect", "--lease-namespace", ns, "--lease-name", lease, "--lease-duration", "10s", "--renew-deadline", "7s", "--retry-period", "2s",
			"--janitor-interval", "0", "--shutdown-grace", "2m")
	}
	procs := []*serveProc{start(), start()}
	lead, other := leaderOf(t, procs)
	leadID, otherID := lead.waitLog(campaigning, 30*time.Second)[1], other.waitLog(campaigning, 30*time.Second)[1]
	t.Logf("leader %s, follower %s", leadID, otherID)

	// Two scheduled runs and a DrillRun pass as the leader's Jobs.
	passed := func(p *serveProc, after time.Time) []drill.Record {
		var out []drill.Record
		for _, r := range p.runs(name) {
			if r.Result == drill.Passed && r.Trigger == "schedule" && r.ScheduledFor.After(after) {
				out = append(out, r)
			}
		}
		return out
	}
	testkit.EventuallyTrue(t, 4*time.Minute, "two scheduled runs pass", func() bool { return len(passed(other, time.Time{})) >= 2 })
	created := strings.TrimSpace(kubectl("apiVersion: firedrill.dev/v1alpha1\nkind: DrillRun\nmetadata: {generateName: fo-jobs-}\nspec: {scenarioRef: {name: fo-jobs}}\n",
		"-n", ns, "create", "-f", "-", "-o", "name"))
	kubectl("", "-n", ns, "wait", "--for=condition=Complete", "--timeout=5m", created)
	var dr v1alpha1.DrillRun
	if err := json.Unmarshal([]byte(kubectl("", "-n", ns, "get", created, "-o", "json")), &dr); err != nil {
		t.Fatal(err)
	}
	if rec := waitRun(t, other, dr.Status.RunID, time.Minute); dr.Status.Result != "passed" || dr.Status.RecordHash != rec.Hash {
		t.Errorf("DrillRun %s: %+v; its record: %s, hash %s", created, dr.Status, rec.Result, rec.Hash)
	}

	// A drill of the leader's in its (slow) backup, its pod writing its records: kill the leader.
	slow.Store(true)
	var inFlight drill.Record
	testkit.EventuallyTrue(t, 3*time.Minute, "a scheduled drill Job's pod runs and records", func() bool {
		for _, r := range other.runs(name) {
			if r.Result == drill.Running && r.Trigger == "schedule" && strings.HasPrefix(r.Runner.Host, jobexec.JobName(r.ID)+"-") && len(r.Steps) > 0 {
				inFlight = r
				return true
			}
		}
		return false
	})
	// Before the kill, every Job and status write is the leader's.
	writers := func() map[string][]string {
		w := map[string][]string{}
		for _, kind := range []string{"scenarios", "drillruns", "jobs"} {
			var list struct {
				Items []struct {
					metav1.ObjectMeta `json:"metadata"`
				} `json:"items"`
			}
			if err := json.Unmarshal([]byte(kubectl("", "-n", ns, "get", kind, "-o", "json", "--show-managed-fields")), &list); err != nil {
				t.Fatal(err)
			}
			for _, o := range list.Items {
				key := kind + "/" + o.Name
				if by := o.Annotations[jobexec.AnnotationCreatedBy]; by != "" {
					w[key] = append(w[key], "created-by "+by)
				}
				for _, m := range o.ManagedFields {
					if m.Manager == "firedrill" || strings.HasPrefix(m.Manager, "firedrill/") {
						w[key] = append(w[key], m.Subresource+" "+m.Manager)
					}
				}
			}
		}
		return w
	}
	before := writers()
	statusWrites, jobs := 0, 0
	for key, ws := range before {
		for _, w := range ws {
			if !strings.HasSuffix(w, " "+leadID) && !strings.HasSuffix(w, "/"+leadID) {
				t.Errorf("before the kill, %s was written by another than the leader %s: %q", key, leadID, w)
			}
			if strings.HasPrefix(w, "status ") {
				statusWrites++
			}
			if strings.HasPrefix(w, "created-by ") {
				jobs++
			}
		}
	}
	if statusWrites < 3 || jobs < 4 || !slices.Contains(before["drillruns/"+strings.TrimPrefix(created, "drillrun.firedrill.dev/")], "status firedrill/"+leadID) {
		t.Errorf("before the kill: %d status writes, %d Jobs by the leader; want the Scenario's and the DrillRuns' statuses and 4 Jobs: %v", statusWrites, jobs, before)
	}
	if strings.Contains(other.stderr.String(), "drill Job created") {
		t.Errorf("the follower created a drill Job")
	}
	if err := lead.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-lead.done
	killed := time.Now()
	t.Logf("killed the leader while run %s (scheduled for %s) is in step %s", inFlight.ID, inFlight.ScheduledFor.Format(time.RFC3339), inFlight.Steps[len(inFlight.Steps)-1].Name)

	// The other takes over and adopts the Job: once it follows, the backup may go fast again.
	other.waitLog(becameLeader, 3*time.Minute)
	t.Logf("takeover %.1fs after the kill", time.Since(killed).Seconds())
	other.waitLog(regexp.MustCompile(`msg="following an adopted drill Job.*id=`+inFlight.ID), 3*time.Minute)
	slow.Store(false)
	adopted := waitRun(t, other, inFlight.ID, 5*time.Minute)
	if adopted.Result != drill.Passed || adopted.Hash == "" || !strings.HasPrefix(adopted.Runner.Host, jobexec.JobName(adopted.ID)+"-") {
		t.Errorf("the adopted run %s: %s %q, hash %q, runner %+v; want passed, from its pod", adopted.ID, adopted.Result, adopted.Message, adopted.Hash, adopted.Runner)
	}
	testkit.EventuallyTrue(t, 4*time.Minute, "two runs scheduled after the kill pass", func() bool { return len(passed(other, killed)) >= 2 })
	after := passed(other, killed)
	var scheduled []drill.Record
	for _, r := range other.runs(name) {
		if r.Trigger == "schedule" {
			scheduled = append(scheduled, r)
		}
	}
	if code := other.stop(syscall.SIGTERM, 3*time.Minute); code != 0 {
		t.Errorf("the new leader after SIGTERM: exit %d", code)
	}
	checkFireTimes(t, scheduled, every)
	// The DrillRun of the adopted run's scheduled time follows its record.
	var sdr v1alpha1.DrillRun
	if err := json.Unmarshal([]byte(kubectl("", "-n", ns, "get", "drillrun", fmt.Sprintf("%s-%d", name, inFlight.ScheduledFor.Unix()), "-o", "json")), &sdr); err != nil {
		t.Fatal(err)
	}
	if sdr.Status.Phase != v1alpha1.DrillRunFinished || sdr.Status.RecordHash != adopted.Hash {
		t.Errorf("the DrillRun of the adopted run: %+v; want Finished with hash %s", sdr.Status, adopted.Hash)
	}
	// Every Job is the leader's of its time, and every one ends (the last pod exits just after
	// it wrote its final record).
	var jl batchv1.JobList
	unfinished := func() []string {
		jl = batchv1.JobList{}
		if err := json.Unmarshal([]byte(kubectl("", "-n", ns, "get", "jobs", "-o", "json")), &jl); err != nil {
			t.Fatal(err)
		}
		var left []string
		for _, j := range jl.Items {
			if !slices.ContainsFunc(j.Status.Conditions, func(c batchv1.JobCondition) bool {
				return (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue
			}) {
				left = append(left, j.Name)
			}
		}
		return left
	}
	testkit.Eventually(t, 2*time.Minute, "every drill Job ends", func() error {
		if left := unfinished(); len(left) > 0 {
			return fmt.Errorf("unfinished: %v", left)
		}
		return nil
	})
	byCreator := map[string]int{}
	for _, j := range jl.Items {
		by := j.Annotations[jobexec.AnnotationCreatedBy]
		byCreator[by]++
		if by != leadID && by != otherID || by == leadID && j.CreationTimestamp.After(killed) || by == otherID && j.CreationTimestamp.Time.Before(killed.Add(-time.Second)) {
			t.Errorf("Job %s created by %q at %s (leader %s killed at %s, then %s)", j.Name, by, j.CreationTimestamp, leadID, killed.Format(time.RFC3339), otherID)
		}
	}
	for _, r := range after {
		if !slices.ContainsFunc(jl.Items, func(j batchv1.Job) bool {
			return j.Name == jobexec.JobName(r.ID) && j.Annotations[jobexec.AnnotationCreatedBy] == otherID
		}) {
			t.Errorf("run %s after the takeover: no Job of it created by %s", r.ID, otherID)
		}
	}
	t.Logf("Jobs by creator: %v", byCreator)
	for key, ws := range writers() {
		for _, w := range ws {
			if !strings.HasSuffix(w, leadID) && !strings.HasSuffix(w, otherID) {
				t.Errorf("%s written by neither replica: %q", key, w)
			}
		}
	}
	if pods := strings.TrimSpace(kubectl("", "-n", ns, "get", "pods", "--field-selector=status.phase=Running", "-o", "name")); pods != "" {
		t.Errorf("drill pods left running: %s", pods)
	}
	if r := firedrill(t, []string{"FIREDRILL_HISTORY=" + dsn}, "history", "verify"); r.code != 0 {
		t.Errorf("history verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
