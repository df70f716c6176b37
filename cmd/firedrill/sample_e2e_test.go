package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
)

// selection is the part of a plan or run record this test reads.
type selection struct {
	Method         string `json:"method"`
	Seed           *uint64
	SeedGiven      bool `json:"seedGiven"`
	CandidateCount int  `json:"candidateCount"`
	Candidates     []struct {
		Name string `json:"name"`
	} `json:"candidates"`
	Chosen     *int     `json:"chosen"`
	Backup     string   `json:"backup"`
	PassedOver []string `json:"passedOver"`
	Reproduce  string   `json:"reproduce"`
}

// Random selection among a Velero Schedule's backups, through the CLI: plan shows the
// candidates and the choice, many plans choose more than one backup, run --seed drills the one a
// recorded seed chose, and an empty window fails the drill with its reason.
func TestVeleroRandomWithinWindow(t *testing.T) {
	t.Parallel()
	needSandbox(t)
	sb := sandboxtest.Shared(t, sandbox.Options{Velero: true})
	env, _ := drillEnv(t, sb)
	env = append(env, "KUBECONFIG="+sb.Kubeconfig())
	ns, _ := veleroNamespace(t, sb, "sampled")
	kubectl := func(stdin string, args ...string) {
		t.Helper()
		if out, err := runKubectl(sb, args...)(stdin); err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
	}
	schedule := "nightly-" + ns
	kubectl(fmt.Sprintf(`apiVersion: velero.io/v1
kind: Schedule
metadata: {name: %s, namespace: velero}
spec: {schedule: "0 3 * * *", paused: true, template: {includedNamespaces: [%s]}}
`, schedule, ns), "apply", "-f", "-")
	t.Cleanup(func() { _, _ = runKubectl(sb, "-n", "velero", "delete", "schedule", schedule)("") })
	// Backups as the Schedule makes them (velero backup create --from-schedule does the same), and
	// one that fails validation: it is passed over, never chosen.
	backup := func(name, location string) {
		t.Helper()
		kubectl(fmt.Sprintf(`apiVersion: velero.io/v1
kind: Backup
metadata: {name: %s, namespace: velero, labels: {velero.io/schedule-name: %s}}
spec: {includedNamespaces: [%s], storageLocation: "%s"}
`, name, schedule, ns, location), "apply", "-f", "-")
		t.Cleanup(func() {
			_, _ = runKubectl(sb, "apply", "-f", "-")(fmt.Sprintf(`apiVersion: velero.io/v1
kind: DeleteBackupRequest
metadata: {name: delete-%s, namespace: velero}
spec: {backupName: %s}
`, name, name))
		})
	}
	var names []string
	for i := range 4 {
		names = append(names, fmt.Sprintf("%s-%d", schedule, i))
		backup(names[i], "")
		waitBackup(t, sb, names[i])
		time.Sleep(time.Second) // start times a second apart: the order is certain
	}
	backup(schedule+"-broken", "no-such-location")

	scenario := func(source, window string) string {
		return writeFile(t, t.TempDir(), "sampled.yaml", fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: sampled-%s}
spec:
  backup: {velero: {latestFrom: {%s, select: random, window: %s}}}
  restore: {scratchNamespace: {}}
  checks: [{objectsRestored: {}}]
`, ns, source, window))
	}
	file := scenario("schedule: "+schedule, "1h")

	planOf := func(file string) selection {
		t.Helper()
		r := firedrill(t, env, "plan", file, "-o", "json")
		var out struct {
			Preflight string    `json:"preflight"`
			Selection selection `json:"selection"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || r.code != 0 || out.Preflight != "ok" {
			t.Fatalf("plan: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
		}
		return out.Selection
	}
	plan := func() selection { return planOf(file) }
	chosen := map[string]int{}
	var older selection // a choice that is not the newest
	for range 12 {
		sel := plan()
		if sel.Method != "random" || sel.Seed == nil || sel.SeedGiven || sel.CandidateCount != 4 || sel.Chosen == nil || uint64(*sel.Chosen) != *sel.Seed%4 {
			t.Fatalf("selection %+v", sel)
		}
		if sel.Candidates[0].Name != names[3] || sel.Candidates[3].Name != names[0] || sel.Backup != sel.Candidates[*sel.Chosen].Name {
			t.Fatalf("candidates %+v, chose %s; want %v newest first", sel.Candidates, sel.Backup, names)
		}
		if !strings.HasPrefix(sel.PassedOver[0], schedule+"-broken: ") {
			t.Errorf("passed over %v", sel.PassedOver)
		}
		chosen[sel.Backup]++
		if *sel.Chosen > 0 {
			older = sel
		}
	}
	t.Logf("12 choices among 4: %v", chosen)
	if len(chosen) < 2 || older.Seed == nil {
		t.Fatalf("12 random choices drilled only %v", chosen)
	}
	// The same backups by their labels, as backups made by other tools are found.
	bySelector := planOf(scenario("selector: {matchLabels: {velero.io/schedule-name: "+schedule+"}}", "1h"))
	if bySelector.CandidateCount != 4 || bySelector.Candidates[0].Name != names[3] || len(bySelector.PassedOver) != 1 {
		t.Errorf("by selector: %+v", bySelector)
	}

	seed := strconv.FormatUint(*older.Seed, 10)
	if text := firedrill(t, env, "plan", file, "--seed", seed); !strings.Contains(text.stdout, "chosen at random: ["+strconv.Itoa(*older.Chosen)+"] "+older.Backup+" (seed "+seed+", given;") {
		t.Errorf("plan --seed %s does not show the choice:\n%s", seed, text.stdout)
	}

	// The recorded seed drills that backup, and the record says the seed was given.
	run := firedrill(t, env, "run", file, "--seed", seed, "-o", "json")
	var rec struct {
		Result string `json:"result"`
		Backup struct {
			Name      string    `json:"name"`
			Source    string    `json:"source"`
			Selection selection `json:"selection"`
		} `json:"backup"`
	}
	if err := json.Unmarshal([]byte(run.stdout), &rec); err != nil || run.code != 0 {
		t.Fatalf("run --seed %s: exit %d, %v\n%s%s", seed, run.code, err, run.stdout, run.stderr)
	}
	sel := rec.Backup.Selection
	if rec.Result != "passed" || rec.Backup.Name != older.Backup || rec.Backup.Source != "velero-schedule "+schedule ||
		*sel.Seed != *older.Seed || !sel.SeedGiven || sel.CandidateCount != 4 || !strings.Contains(sel.Reproduce, "--seed "+seed) {
		t.Errorf("record %+v", rec)
	}
	if bad := firedrill(t, env, "run", file, "--seed", "-1"); bad.code != exitUsage || !strings.Contains(bad.stderr, "whole number") {
		t.Errorf("--seed -1: exit %d\n%s", bad.code, bad.stderr)
	}

	// An empty window: the drill fails with its reason, and leaves no scratch namespace.
	time.Sleep(2 * time.Second)
	run = firedrill(t, env, "run", scenario("schedule: "+schedule, "1s"), "-o", "json")
	var failed struct {
		Result  string `json:"result"`
		Message string `json:"message"`
		Backup  struct {
			Selection selection `json:"selection"`
		} `json:"backup"`
		Target any `json:"target"`
	}
	if err := json.Unmarshal([]byte(run.stdout), &failed); err != nil || run.code != exitFailed {
		t.Fatalf("empty window: exit %d, %v\n%s%s", run.code, err, run.stdout, run.stderr)
	}
	for _, want := range []string{"no backup within the window (1s, since ", "RPO unbounded", "the newest usable backup, " + names[3] + ", is "} {
		if !strings.Contains(failed.Message, want) {
			t.Errorf("message %q lacks %q", failed.Message, want)
		}
	}
	if s := failed.Backup.Selection; failed.Result != "failed" || s.Chosen != nil || s.CandidateCount != 0 || failed.Target != nil {
		t.Errorf("record %+v", failed)
	}
}
