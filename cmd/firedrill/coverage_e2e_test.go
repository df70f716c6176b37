package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/firedrill-dev/firedrill/coverage"
	"github.com/firedrill-dev/firedrill/internal/browsertest"
	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
)

// TestCoverageOfVeleroSchedules: three Velero Schedules, each backing up its own namespace.
// passing's backup is drilled and passes; failing's is drilled and fails (its schedule leaves
// out the Secrets the drill checks); never's has a scenario that never ran. `coverage` must list
// never and failing as not covered and passing as covered, serve's metrics must say the same,
// the shipped alert rule must fire for exactly those two on those metrics (promtool), and the
// HTML report must name them in its first section, as Chromium shows it.
func TestCoverageOfVeleroSchedules(t *testing.T) {
	t.Parallel()
	needSandbox(t)
	sb := sandboxtest.Shared(t, sandbox.Options{Velero: true})
	env, _ := drillEnv(t, sb)
	env = append(env, "KUBECONFIG="+sb.Kubeconfig())
	dir := t.TempDir()
	scenarioDir := filepath.Join(dir, "scenarios")
	if err := os.Mkdir(scenarioDir, 0o755); err != nil {
		t.Fatal(err)
	}

	kubectl := runKubectl(sb, "apply", "-f", "-")
	names := map[string]string{} // role → Schedule (and scenario) name
	for _, role := range []string{"passing", "failing", "never"} {
		ns, cs := veleroNamespace(t, sb, "cov-"+role)
		names[role] = ns
		if _, err := cs.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db"},
			StringData: map[string]string{"password": "not-a-real-one"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// Paused: Velero makes no backups of it on its own; the test makes the one a team's
		// schedule would have, labelled as Velero labels a scheduled backup.
		excluded := ""
		if role == "failing" {
			excluded = "excludedResources: [secrets]"
		}
		out, err := kubectl(fmt.Sprintf(`apiVersion: velero.io/v1
kind: Schedule
metadata: {name: %[1]s, namespace: velero}
spec: {schedule: "0 3 * * *", paused: true, template: {includedNamespaces: [%[1]s], %[2]s}}
---
apiVersion: velero.io/v1
kind: Backup
metadata: {name: %[1]s-1, namespace: velero, labels: {velero.io/schedule-name: %[1]s}}
spec: {includedNamespaces: [%[1]s], ttl: 2h, %[2]s}
`, ns, excluded))
		if err != nil {
			t.Fatalf("kubectl apply: %v\n%s", err, out)
		}
		t.Cleanup(func() {
			runKubectl(sb, "-n", "velero", "delete", "schedule,backup", ns, ns+"-1", "--wait=false")("")
		})
		writeFile(t, scenarioDir, role+".yaml", fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: %s}
spec:
  backup: {velero: {latestFrom: {schedule: %s}}}
  restore: {scratchNamespace: {}}
  checks:
    - {name: the secrets came back, objectsMatch: {resources: [secrets]}}
`, ns, ns))
	}
	for _, role := range []string{"passing", "failing", "never"} {
		waitBackup(t, sb, names[role]+"-1")
	}

	// Real drills: one passes, one fails.
	for role, want := range map[string]int{"passing": 0, "failing": exitFailed} {
		r := firedrill(t, env, "run", filepath.Join(scenarioDir, role+".yaml"))
		if r.code != want {
			t.Fatalf("run %s: exit %d, want %d\n%s\n%s", role, r.code, want, r.stdout, r.stderr)
		}
	}

	// coverage: never and failing are not covered, passing is.
	r := firedrill(t, env, "coverage", "--scenarios", scenarioDir, "-o", "json")
	if r.code != 0 && r.code != exitError { // exit 3: something else of the shared sandbox unreadable
		t.Fatalf("coverage: exit %d\n%s", r.code, r.stderr)
	}
	var res coverage.Result
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("coverage -o json: %v\n%s", err, r.stdout)
	}
	schedule := func(role string) coverage.Item {
		for _, it := range res.Items {
			if it.Kind == coverage.KindSchedule && it.Name == names[role] {
				return it
			}
		}
		t.Fatalf("coverage does not list the Schedule %s:\n%s", names[role], r.stdout)
		return coverage.Item{}
	}
	pass, fail, never := schedule("passing"), schedule("failing"), schedule("never")
	if pass.Status != coverage.Covered || pass.LastPassed == nil || pass.Backups != 1 {
		t.Errorf("passing: %+v", pass)
	}
	if fail.Status != coverage.NotCovered || fail.LastDrill == nil || fail.LastDrill.Result != "failed" || !strings.Contains(fail.Reason, "never passed") {
		t.Errorf("failing: %+v", fail)
	}
	if never.Status != coverage.NotCovered || never.LastDrill != nil || !strings.Contains(never.Reason, "never drilled") {
		t.Errorf("never: %+v", never)
	}
	for _, role := range []string{"passing", "failing", "never"} {
		ns := coverage.Item{}
		for _, it := range res.Items {
			if it.Kind == coverage.KindNamespace && it.Name == names[role] {
				ns = it
			}
		}
		if want := schedule(role).Status; ns.Status != want {
			t.Errorf("namespace %s: %q, want %q as its Schedule", names[role], ns.Status, want)
		}
	}
	table := firedrill(t, env, "coverage", "--scenarios", scenarioDir)
	if !strings.Contains(table.stdout, "Not restore-tested:") || !strings.Contains(table.stdout, "velero-schedule") || !strings.Contains(table.stdout, names["never"]) {
		t.Errorf("coverage table:\n%s", table.stdout)
	}

	// serve's metrics say the same, and the alert rule fires on them for exactly the two.
	p := startServe(t, env, "--scenarios", scenarioDir, "--janitor-interval", "0", "--coverage-interval", "1h")
	var lastPassed, window map[string]float64
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, body := p.request("GET", "/metrics", "")
		lastPassed = itemSeries(string(body), "firedrill_backup_last_drill_timestamp_seconds", names)
		window = itemSeries(string(body), "firedrill_backup_coverage_window_seconds", names)
		if len(lastPassed) == 3 && len(window) == 3 {
			if !regexp.MustCompile(`(?m)^firedrill_coverage_ratio \S+$`).Match(body) {
				t.Errorf("no firedrill_coverage_ratio:\n%s", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no coverage series of the three Schedules within 2m:\n%s", body)
		}
		time.Sleep(time.Second)
	}
	p.stop(os.Interrupt, time.Minute)
	if lastPassed["failing"] != 0 || lastPassed["never"] != 0 || lastPassed["passing"] != float64(pass.LastPassed.At.UnixNano())/1e9 {
		t.Errorf("last passed drills exported: %v, want passing at %s", lastPassed, pass.LastPassed.At)
	}
	if window["passing"] != coverage.DefaultWindow.Seconds() {
		t.Errorf("windows: %v", window)
	}
	firing := alertsFiring(t, lastPassed, window, names)
	if !slices.Equal(firing, []string{names["failing"], names["never"]}) && !slices.Equal(firing, []string{names["never"], names["failing"]}) {
		t.Errorf("FiredrillBackupNotRestoreTested fires for %v, want %s and %s", firing, names["failing"], names["never"])
	}

	// The HTML report opens with them, as Chromium shows it.
	out := filepath.Join(dir, "report.html")
	rep := firedrill(t, env, "report", "--since", "1d", "--coverage", "--scenarios", scenarioDir, "--out", out)
	if rep.code != 0 {
		t.Fatalf("report: exit %d\n%s", rep.code, rep.stderr)
	}
	bctx, browser := browsertest.Start(t, chromedp.WindowSize(1200, 900), chromedp.ProxyServer("http://127.0.0.1:9"))
	ctx, cancel := context.WithTimeout(bctx, 3*time.Minute)
	defer cancel()
	eval := browsertest.Open(t, ctx, browser, "file://"+out, "#coverage")
	notCovered, covered := eval(`document.querySelector("#not-covered").innerText`), eval(`document.querySelector("#covered").innerText`)
	first := eval(`document.querySelector("section").id + ": " + document.querySelector("section h2").innerText`)
	if first != "coverage: Not restore-tested in the period" {
		t.Errorf("the report's first section is %q", first)
	}
	for _, want := range []string{names["failing"], names["never"], "never passed", "never drilled"} {
		if !strings.Contains(notCovered, want) {
			t.Errorf("the not-covered table does not show %q:\n%s", want, notCovered)
		}
	}
	if strings.Contains(notCovered, names["passing"]+"\t") || !strings.Contains(covered, names["passing"]) {
		t.Errorf("passing is not listed as restore-tested:\nnot covered:\n%s\ncovered:\n%s", notCovered, covered)
	}
}

// itemSeries reads the per-item coverage series of the three Schedules from /metrics text,
// by role.
func itemSeries(text, metric string, names map[string]string) map[string]float64 {
	out := map[string]float64{}
	re := regexp.MustCompile(`(?m)^` + metric + `\{([^}]*)\} (\S+)$`)
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		if !strings.Contains(m[1], `kind="velero-schedule"`) {
			continue
		}
		for role, name := range names {
			if strings.Contains(m[1], `name="`+name+`"`) {
				v, _ := strconv.ParseFloat(m[2], 64)
				out[role] = v
			}
		}
	}
	return out
}

// alertsFiring runs the shipped rules over the exported values with promtool and returns the
// Schedules FiredrillBackupNotRestoreTested fires for. Times are shifted so that the test's
// clock (which starts at 0) stands at now two hours in: the rule's `for` has passed.
func alertsFiring(t *testing.T, lastPassed, window map[string]float64, names map[string]string) []string {
	t.Helper()
	pt, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not installed: run make promtool (Debian's prometheus package)")
	}
	const at = 2 * time.Hour
	shift := float64(time.Now().Unix()) - at.Seconds()
	var series, alerts strings.Builder
	for role, name := range names {
		lbl := fmt.Sprintf(`{kind="velero-schedule",cluster="x",velero_namespace="velero",name="%s"}`, name)
		fmt.Fprintf(&series, "      - series: 'firedrill_backup_last_drill_timestamp_seconds%s'\n        values: '%gx130'\n", lbl, lastPassed[role]-shift)
		fmt.Fprintf(&series, "      - series: 'firedrill_backup_coverage_window_seconds%s'\n        values: '%gx130'\n", lbl, window[role])
	}
	// Ask promtool to expect none: its failure message lists what did fire.
	rules, err := filepath.Abs(filepath.Join("..", "..", "deploy", "helm", "firedrill", "files", "firedrill-rules.groups.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&alerts, "rule_files: [%s]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n%s    alert_rule_test:\n      - eval_time: %s\n        alertname: FiredrillBackupNotRestoreTested\n", rules, series.String(), at)
	file := filepath.Join(t.TempDir(), "coverage.test.yaml")
	if err := os.WriteFile(file, []byte(alerts.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command(pt, "test", "rules", file).CombinedOutput()
	_, got, _ := strings.Cut(string(out), "got:")
	var firing []string
	for _, m := range regexp.MustCompile(`[{ ,]name="([^"]+)"`).FindAllStringSubmatch(got, -1) {
		if !slices.Contains(firing, m[1]) {
			firing = append(firing, m[1])
		}
	}
	if len(firing) == 0 && !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool test rules: %s", out)
	}
	return firing
}
