package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	scenarioExamples = "../../scenarios/examples"
	scenarioTestdata = "../../scenarios/testdata"
)

func TestScenarioValidateExamples(t *testing.T) {
	t.Parallel()
	r := inProcess("scenario", "validate", scenarioExamples)
	if r.code != exitPassed {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	files, _ := filepath.Glob(filepath.Join(scenarioExamples, "*.yaml"))
	for _, f := range files {
		if !strings.Contains(r.stdout, "OK "+f+"\n") {
			t.Errorf("no OK line for %s:\n%s", f, r.stdout)
		}
	}
	if !strings.HasSuffix(r.stdout, "files: all valid\n") {
		t.Errorf("no summary line:\n%s", r.stdout)
	}
}

// Every problem of every file is printed as file:line: message, with a summary, and the exit
// status is 2; good files still get their OK line.
func TestScenarioValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	typos := filepath.Join(scenarioTestdata, "invalid-typos.yaml")
	many := filepath.Join(scenarioTestdata, "invalid-many.yaml")
	minimal := filepath.Join(scenarioExamples, "minimal.yaml")
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	r := inProcess("scenario", "validate", minimal, typos, many, missing)
	if r.code != exitUsage {
		t.Fatalf("exit %d, want %d\n%s%s", r.code, exitUsage, r.stdout, r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if lines[0] != "OK "+minimal {
		t.Errorf("first line %q, want the OK of %s", lines[0], minimal)
	}
	for _, want := range []string{
		typos + `:10: unknown field "endpionts" in spec.backup.etcd.take: did you mean "endpoints"?`,
		typos + `:11: spec.backup.etcd.take.dialTimeout: invalid duration "5 minutes": use e.g. 90s, 45m, 26h or 7d`,
		many + `:5: metadata.name: "Shop_Drill" is not a valid name`,
		many + `:13: spec.schedule: "61 * * * *" is not a schedule`,
		many + `:43: spec.cleanup.policy: "Sometimes" is not a policy: use Always, OnSuccess or Never`,
		missing + ": does not exist",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	// Each file's every problem: as many lines as the loader's golden files list.
	n := 1 // the missing file
	for _, f := range []string{typos, many} {
		golden, err := os.ReadFile(strings.TrimSuffix(f, ".yaml") + ".errors")
		if err != nil {
			t.Fatal(err)
		}
		n += strings.Count(string(golden), "\n")
	}
	if got := strings.Count(r.stdout, scenarioTestdata) + strings.Count(r.stdout, missing+":"); got != n {
		t.Errorf("%d problem lines, want %d:\n%s", got, n, r.stdout)
	}
	if want := "problems in 3 of 4 files"; !strings.HasSuffix(lines[len(lines)-1], want) {
		t.Errorf("summary %q, want …%q", lines[len(lines)-1], want)
	}
	if r.stderr != "" {
		t.Errorf("problems are the output, not errors; stderr: %q", r.stderr)
	}
}

func TestScenarioValidateJSON(t *testing.T) {
	t.Parallel()
	fit := filepath.Join(scenarioTestdata, "invalid-fit.yaml")
	minimal := filepath.Join(scenarioExamples, "minimal.yaml")
	r := inProcess("scenario", "validate", "-o", "json", minimal, fit)
	if r.code != exitUsage {
		t.Fatalf("exit %d, want %d: %s", r.code, exitUsage, r.stderr)
	}
	var got []struct {
		Path     string `json:"path"`
		Valid    bool   `json:"valid"`
		Problems []struct {
			Line    int    `json:"line"`
			Field   string `json:"field"`
			Message string `json:"message"`
		} `json:"problems"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, r.stdout)
	}
	if len(got) != 2 || got[0].Path != minimal || !got[0].Valid || got[0].Problems == nil || len(got[0].Problems) != 0 {
		t.Fatalf("first entry %+v, want %s valid with problems []", got, minimal)
	}
	if got[1].Path != fit || got[1].Valid || len(got[1].Problems) != 6 {
		t.Fatalf("second entry %+v, want %s with 6 problems", got[1], fit)
	}
	p := got[1].Problems[3]
	if p.Line != 14 || p.Field != "spec.checks[0].canary" || !strings.Contains(p.Message, "needs spec.backup.etcd.take") {
		t.Errorf("problem %+v", p)
	}
}

func TestScenarioValidateMisuse(t *testing.T) {
	t.Parallel()
	r := inProcess("scenario", "validate")
	if r.code != exitUsage || !strings.Contains(r.stderr, "takes one or more scenario files or directories") {
		t.Errorf("no arguments: exit %d, stderr %q", r.code, r.stderr)
	}
	empty := t.TempDir()
	r = inProcess("scenario", "validate", empty)
	if r.code != exitUsage || !strings.Contains(r.stdout, empty+": no *.yaml or *.yml files in this directory") {
		t.Errorf("empty directory: exit %d, stdout %q", r.code, r.stdout)
	}
}

// The built binary, as a user or CI runs it.
func TestScenarioValidateBinary(t *testing.T) {
	t.Parallel()
	r := firedrill(t, nil, "scenario", "validate", scenarioExamples)
	if r.code != 0 || !strings.Contains(r.stdout, "all valid") {
		t.Errorf("examples: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	bad := filepath.Join(scenarioTestdata, "invalid-header.yaml")
	r = firedrill(t, nil, "scenario", "validate", bad)
	want := bad + `:1: apiVersion: "firedrill.dev/v1" is not supported by this firedrill: use firedrill.dev/v1alpha1` + "\n" +
		bad + `:2: kind: "Drill" is not a kind firedrill knows: use Scenario` + "\n" +
		"2 problems in 1 of 1 file\n"
	if r.code != exitUsage || r.stdout != want {
		t.Errorf("exit %d, stdout:\n%s\nwant exit 2 and:\n%s", r.code, r.stdout, want)
	}
	for _, args := range [][]string{{"scenario", "validate", "--help"}, {"scenario", "--help"}} {
		r := firedrill(t, nil, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Exit status:") {
			t.Errorf("firedrill %v: exit %d\n%s", args, r.code, r.stdout)
		}
	}
	if r := firedrill(t, nil, "scenario", "validate", "--help"); !strings.Contains(r.stdout, "Examples:") {
		t.Errorf("scenario validate --help has no examples:\n%s", r.stdout)
	}
}

// One file named twice, relative and absolute, is checked and reported once.
func TestScenarioValidateSameFileTwice(t *testing.T) {
	t.Parallel()
	rel := filepath.Join(scenarioTestdata, "invalid-header.yaml")
	abs, _ := filepath.Abs(rel)
	r := inProcess("scenario", "validate", rel, abs, scenarioTestdata+"/../testdata/invalid-header.yaml")
	if r.code != exitUsage || strings.Count(r.stdout, "apiVersion:") != 1 || !strings.HasSuffix(r.stdout, "2 problems in 1 of 1 file\n") {
		t.Errorf("exit %d:\n%s", r.code, r.stdout)
	}
}
