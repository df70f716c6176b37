package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/api/v1alpha1"
	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/internal/testkit"
	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
)

// scenarioCRD and drillRunCRD are the generated CRDs as deploy/ ships them.
var (
	scenarioCRD = filepath.Join("..", "..", "deploy", "kustomize", "base", "crds", "firedrill.dev_scenarios.yaml")
	drillRunCRD = filepath.Join("..", "..", "deploy", "kustomize", "base", "crds", "firedrill.dev_drillruns.yaml")
)

// TestServeScenariosFromCluster: Scenario resources applied with kubectl are validated,
// scheduled and run by `serve --scenarios-from cluster`, and `kubectl get scenarios` shows
// what serve found: valid with its next run, invalid naming the field, the last run as the
// history recorded it. A DrillRun created with kubectl runs its Scenario, and scheduled runs
// get DrillRuns, kept to --drillrun-history-limit; their status, the Scenario's and the
// history name the same record hash.
func TestServeScenariosFromCluster(t *testing.T) {
	t.Parallel()
	needSandbox(t)
	sb := sandboxtest.Shared(t, sandbox.Options{})
	kubectl := func(stdin string, args ...string) string {
		t.Helper()
		out, err := runKubectl(sb, args...)(stdin)
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	kubectl("", "apply", "--server-side", "--force-conflicts", "--field-manager=firedrill-e2e", "-f", scenarioCRD)
	kubectl("", "apply", "--server-side", "--force-conflicts", "--field-manager=firedrill-e2e", "-f", drillRunCRD)
	kubectl("", "wait", "--for=condition=Established", "--timeout=1m", "crd/scenarios.firedrill.dev", "crd/drillruns.firedrill.dev")
	ns := fmt.Sprintf("drills-e2e-%d", time.Now().UnixNano()%1e6)
	kubectl("", "create", "namespace", ns)
	t.Cleanup(func() { runKubectl(sb, "delete", "namespace", ns, "--wait=false")("") })

	// A scenario file is a Scenario manifest: the same document goes to kubectl.
	kubectl(etcdScenario("cluster-sched", "@every 20s", sb.EtcdEndpoints(), "{team: platform}", false), "-n", ns, "apply", "-f", "-")
	bad := strings.Replace(etcdScenario("cluster-bad", "", sb.EtcdEndpoints(), "", false), "  timeout: 5m\n", "  timeout: 5m\n  schedule: every tuesday\n", 1)
	kubectl(bad, "-n", ns, "apply", "-f", "-")
	kubectl(etcdScenario("cluster-adhoc", "", sb.EtcdEndpoints(), "{team: platform}", false), "-n", ns, "apply", "-f", "-")

	hist := filepath.Join(t.TempDir(), "history.db")
	env := []string{"FIREDRILL_HISTORY=" + hist, "TMPDIR=" + t.TempDir(), "FIREDRILL_BIN_DIR=" + sb.BinDir(), "FIREDRILL_TOKEN=", "FIREDRILL_SCENARIOS="}
	p := startServe(t, env, "--scenarios-from", "cluster", "--scenarios-namespace", ns, "--kubeconfig", sb.Kubeconfig(),
		"--shutdown-grace", "2s", "--janitor-interval", "0", "--drillrun-history-limit", "1")

	status := func(name string) v1alpha1.ScenarioStatus {
		t.Helper()
		var sc v1alpha1.Scenario
		if err := json.Unmarshal([]byte(kubectl("", "-n", ns, "get", "scenario", name, "-o", "json")), &sc); err != nil {
			t.Fatal(err)
		}
		return sc.Status
	}
	condition := func(st v1alpha1.ScenarioStatus, typ string) (status, msg string) {
		for _, c := range st.Conditions {
			if c.Type == typ {
				return string(c.Status), c.Message
			}
		}
		return "", ""
	}

	// Valid, with its next run; the invalid one names its field.
	testkit.EventuallyTrue(t, 2*time.Minute, "cluster-sched Valid with a next run", func() bool {
		st := status("cluster-sched")
		v, _ := condition(st, v1alpha1.ConditionValid)
		return v == "True" && st.NextRunAt != nil
	})
	testkit.EventuallyTrue(t, time.Minute, "cluster-bad Valid=False", func() bool {
		v, _ := condition(status("cluster-bad"), v1alpha1.ConditionValid)
		return v == "False"
	})
	if _, msg := condition(status("cluster-bad"), v1alpha1.ConditionValid); !strings.Contains(msg, "spec.schedule") {
		t.Errorf("cluster-bad's Valid condition does not name spec.schedule: %q", msg)
	}
	if r, _ := condition(status("cluster-bad"), v1alpha1.ConditionReady); r != "False" {
		t.Errorf("cluster-bad, never valid, is Ready=%q", r)
	}
	table := kubectl("", "-n", ns, "get", "scenarios")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`NAME\s+SCHEDULE\s+VALID\s+LAST RESULT\s+LAST RUN\s+NEXT RUN\s+RTO\s+AGE`),
		regexp.MustCompile(`(?m)^cluster-sched\s+@every 20s\s+True\s+.*\d{4}-\d\d-\d\dT`),
		regexp.MustCompile(`(?m)^cluster-bad\s+every tuesday\s+False\s`),
	} {
		if !want.MatchString(table) {
			t.Errorf("kubectl get scenarios does not match %s:\n%s", want, table)
		}
	}

	// serve runs it on its schedule; the status's last run is the history's record.
	var rec drill.Record
	testkit.EventuallyTrue(t, 3*time.Minute, "a scheduled run of cluster-sched passes", func() bool {
		for _, r := range p.runs("cluster-sched") {
			if r.Result == drill.Failed || r.Result == drill.Error {
				t.Fatalf("run %s: %s: %s", r.ID, r.Result, r.Message)
			}
			if r.Trigger == "schedule" && r.Result == drill.Passed {
				rec = r
				return true
			}
		}
		return false
	})
	var st v1alpha1.ScenarioStatus
	testkit.EventuallyTrue(t, time.Minute, "status.lastRun of cluster-sched names a passed run", func() bool {
		st = status("cluster-sched")
		return st.LastRun != nil && st.LastRun.Result == "passed"
	})
	// The newest passed run by then may be a later one: compare with that record.
	if st.LastRun.ID != rec.ID {
		rec = waitRun(t, p, st.LastRun.ID, time.Minute)
	}
	lr := st.LastRun
	if lr.Result != string(rec.Result) || lr.Trigger != "schedule" || lr.RecordHash == "" || lr.RecordHash != rec.Hash ||
		!lr.StartedAt.Time.Equal(rec.StartedAt.UTC().Truncate(time.Second)) || rec.RTOSeconds == nil || lr.RTO == "" {
		t.Errorf("status.lastRun %+v disagrees with the history's record %s (%s, hash %s, started %s, rto %v)",
			lr, rec.ID, rec.Result, rec.Hash, rec.StartedAt, rec.RTOSeconds)
	}
	if v, _ := condition(st, v1alpha1.ConditionLastRunPassed); v != "True" {
		t.Errorf("LastRunPassed is %q after a pass", v)
	}
	if sc := p.scenario("cluster-sched"); sc.Labels["team"] != "platform" {
		t.Errorf("the API's view of cluster-sched: %+v", sc)
	}

	t.Logf("kubectl get scenarios after a run:\n%s", kubectl("", "-n", ns, "get", "scenarios"))

	// The documented DrillRun, for cluster-adhoc: kubectl create, kubectl wait, and its status,
	// the Scenario's lastRun and the history agree.
	manifest, err := os.ReadFile(filepath.Join("..", "..", "deploy", "examples", "drillrun.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	example := strings.Replace(string(manifest), "name: control-plane-etcd", "name: cluster-adhoc", 1)
	created := strings.TrimSpace(kubectl(example, "-n", ns, "create", "-f", "-", "-o", "name"))
	kubectl("", "-n", ns, "wait", "--for=condition=Complete", "--timeout=5m", created)
	drillRun := func(name string) v1alpha1.DrillRunStatus {
		t.Helper()
		var dr v1alpha1.DrillRun
		if err := json.Unmarshal([]byte(kubectl("", "-n", ns, "get", name, "-o", "json")), &dr); err != nil {
			t.Fatal(err)
		}
		return dr.Status
	}
	ds := drillRun(created)
	adhoc := waitRun(t, p, ds.RunID, time.Minute)
	if ds.Phase != v1alpha1.DrillRunFinished || ds.Result != "passed" || ds.RecordHash == "" || ds.RecordHash != adhoc.Hash ||
		adhoc.Trigger != "drillrun" || adhoc.Labels["change"] != "CHG-1234" || adhoc.Labels["team"] != "platform" {
		t.Errorf("DrillRun %s: %+v; its record %s: %s, hash %s, trigger %s, labels %v", created, ds, adhoc.ID, adhoc.Result, adhoc.Hash, adhoc.Trigger, adhoc.Labels)
	}
	testkit.EventuallyTrue(t, time.Minute, "cluster-adhoc's lastRun names the DrillRun's record", func() bool {
		lr := status("cluster-adhoc").LastRun
		return lr != nil && lr.RecordHash == adhoc.Hash && lr.ID == adhoc.ID
	})
	// A DrillRun naming no scenario of its namespace fails at once, saying so.
	kubectl("apiVersion: firedrill.dev/v1alpha1\nkind: DrillRun\nmetadata: {name: nope}\nspec: {scenarioRef: {name: nope}}\n", "-n", ns, "create", "-f", "-")
	kubectl("", "-n", ns, "wait", "--for=condition=Complete", "--timeout=1m", "drillrun/nope")
	if ds := drillRun("drillrun/nope"); ds.Phase != v1alpha1.DrillRunFailed || !strings.Contains(ds.Message, `no scenario "nope"`) {
		t.Errorf("a DrillRun of no scenario: %+v", ds)
	}

	// Scheduled runs got DrillRuns; one is kept (--drillrun-history-limit 1), the newest.
	var kept v1alpha1.DrillRunStatus
	testkit.EventuallyTrue(t, 3*time.Minute, "two scheduled runs of cluster-sched, the DrillRun of the newest kept alone", func() bool {
		var list struct{ Items []v1alpha1.DrillRun }
		if err := json.Unmarshal([]byte(kubectl("", "-n", ns, "get", "drillruns", "-l", "firedrill.dev/scenario=cluster-sched,firedrill.dev/trigger=schedule", "-o", "json")), &list); err != nil {
			t.Fatal(err)
		}
		scheduled := 0
		for _, r := range p.runs("cluster-sched") {
			if r.Trigger == "schedule" && r.Result == drill.Passed {
				scheduled++
			}
		}
		if len(list.Items) != 1 || scheduled < 2 || list.Items[0].Status.Phase != v1alpha1.DrillRunFinished {
			return false
		}
		kept = list.Items[0].Status
		return true
	})
	if rec := waitRun(t, p, kept.RunID, time.Minute); kept.Result != string(rec.Result) || kept.RecordHash != rec.Hash || rec.Trigger != "schedule" {
		t.Errorf("the kept DrillRun of a scheduled run: %+v; its record %s: %s, hash %s, trigger %s", kept, rec.ID, rec.Result, rec.Hash, rec.Trigger)
	}
	table = kubectl("", "-n", ns, "get", "drillruns")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`NAME\s+SCENARIO\s+PHASE\s+RESULT\s+RECORD\s+AGE`),
		regexp.MustCompile(`(?m)^control-plane-etcd-\w+\s+cluster-adhoc\s+Finished\s+passed\s+` + regexp.QuoteMeta(adhoc.ID) + `\s`),
		regexp.MustCompile(`(?m)^nope\s+nope\s+Failed\s`),
		regexp.MustCompile(`(?m)^cluster-sched-\d+\s+cluster-sched\s+Finished\s+passed\s`),
	} {
		if !want.MatchString(table) {
			t.Errorf("kubectl get drillruns does not match %s:\n%s", want, table)
		}
	}
	t.Logf("kubectl get drillruns:\n%s", table)

	// An edit that breaks it keeps the last valid version scheduled, and says so.
	kubectl("", "-n", ns, "patch", "scenario", "cluster-sched", "--type=merge", "-p", `{"spec":{"timeout":"-1m"}}`)
	testkit.EventuallyTrue(t, time.Minute, "cluster-sched Valid=False, still Ready", func() bool {
		st := status("cluster-sched")
		v, msg := condition(st, v1alpha1.ConditionValid)
		r, _ := condition(st, v1alpha1.ConditionReady)
		return v == "False" && strings.Contains(msg, "spec.timeout") && r == "True"
	})
	if code := p.stop(syscall.SIGTERM, time.Minute); code != 0 {
		t.Errorf("serve exited %d", code)
	}
}
