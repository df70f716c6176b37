package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/internal/pgtest"
	"github.com/firedrill-dev/firedrill/internal/testkit"
	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
	"github.com/firedrill-dev/firedrill/service"
)

func TestServeUsageErrors(t *testing.T) {
	t.Parallel()
	env := []string{"FIREDRILL_HISTORY=" + filepath.Join(t.TempDir(), "history.db"), "FIREDRILL_SCENARIOS=", "FIREDRILL_TOKEN=", "FIREDRILL_READ_TOKEN="}
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"serve"}, exitUsage, "serve needs --scenarios DIR"},
		{[]string{"serve", "--scenarios", dir, "--log-format", "xml"}, exitUsage, `--log-format "xml"`},
		{[]string{"serve", "--scenarios", dir, "--max-concurrent", "0"}, exitUsage, "--max-concurrent must be at least 1"},
		{[]string{"serve", "--scenarios", dir, "--listen", "8080"}, exitUsage, "--listen"},
		{[]string{"serve", "--scenarios", dir, "--token-file", filepath.Join(dir, "none")}, exitUsage, "--token-file"},
		{[]string{"serve", "--scenarios", dir, "--leader-elect", "--lease-duration", "5s", "--renew-deadline", "10s"}, exitUsage, "lease timings"},
		{[]string{"serve", "--scenarios", dir, "--webhook", "not a url"}, exitUsage, "notifications"},
		{[]string{"serve", "--scenarios", dir, "--read-token-file", filepath.Join(dir, "none")}, exitUsage, "--read-token-file"},
		{[]string{"serve", "--scenarios", dir, "--tls-cert-file", filepath.Join(dir, "tls.crt")}, exitUsage, "--tls-cert-file and --tls-key-file go together"},
		{[]string{"serve", "--scenarios", dir, "--tls-cert-file", filepath.Join(dir, "tls.crt"), "--tls-key-file", filepath.Join(dir, "tls.key")}, exitUsage, "TLS key pair"},
		{[]string{"serve", "--scenarios", dir, "--notify-config", filepath.Join(dir, "none.yaml")}, exitUsage, "--notify-config"},
		// The scenario directory must be readable: nothing to schedule otherwise.
		{[]string{"serve", "--scenarios", filepath.Join(dir, "missing"), "--janitor-interval", "0"}, exitUsage, "scenarios"},
		// An unreachable history at start-up is an error with what to do, not a hang.
		{[]string{"serve", "--scenarios", dir, "--history", "postgres://firedrill@127.0.0.1:1/none?connect_timeout=3", "--janitor-interval", "0"},
			exitError, "serve needs its history at start-up"},
	} {
		r := firedrill(t, env, append(tc.args, "--listen", listenArg(tc.args))...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("firedrill %v: exit %d, want %d and %q in:\n%s", tc.args, r.code, tc.code, tc.want, r.stderr)
		}
	}
	help := firedrill(t, nil, "serve", "--help")
	for _, want := range []string{"Examples:", "--leader-elect", "--shutdown-grace", "SIGHUP", "Exit status:", "--read-token-file", "--tls-cert-file", "--notify-config"} {
		if !strings.Contains(help.stdout, want) {
			t.Errorf("serve --help lacks %q", want)
		}
	}
}

// listenArg keeps a test's own --listen, else picks a free port so that parallel tests don't
// collide on 8080.
func listenArg(args []string) string {
	for i, a := range args {
		if a == "--listen" && i+1 < len(args) {
			return args[i+1]
		}
	}
	return "127.0.0.1:0"
}

// The spool directory's default is tested in drill/history (DefaultSpoolDir), the token file in
// server (LoadToken), what counts as loopback in service.
func TestServeUnitHelpers(t *testing.T) {
	t.Parallel()
	var buf strings.Builder
	newLogger(&buf, "json", "debug").Debug("hello", "grace", "2s")
	var line map[string]any
	if err := json.Unmarshal([]byte(buf.String()), &line); err != nil || line["msg"] != "hello" || line["grace"] != "2s" {
		t.Errorf("--log-format json wrote %q (%v)", buf.String(), err)
	}
	o := serveOptions{cfg: service.Config{Listen: "127.0.0.1:8080", MaxConcurrent: 2, SpoolFlushInterval: time.Second, SlackWebhooks: []string{"https://a"}},
		logFormat: "text", logLevel: "info"}
	if err := o.check(func(k string) string {
		return map[string]string{"FIREDRILL_SCENARIOS": "/s", "FIREDRILL_SLACK_WEBHOOK": "https://b, https://c"}[k]
	}); err != nil || o.drill.scenariosDir != "/s" || !slices.Equal(o.cfg.SlackWebhooks, []string{"https://a", "https://b", "https://c"}) {
		t.Errorf("check: %v, scenarios %q, slack %v", err, o.drill.scenariosDir, o.cfg.SlackWebhooks)
	}
	// A token file wins over the environment; neither: no token.
	file := writeFile(t, t.TempDir(), "read-token", " from-file\n")
	for _, c := range []struct{ file, env, want string }{{file, "from-env", "from-file"}, {"", " from-env ", "from-env"}, {"", "", ""}} {
		if got, err := loadToken(c.file, "--read-token-file", c.env); got != c.want || err != nil {
			t.Errorf("loadToken(%q, env %q) = %q, %v; want %q", c.file, c.env, got, err, c.want)
		}
	}
}

var (
	stepLine = func(id, step string) *regexp.Regexp {
		return regexp.MustCompile(`msg="drill step".*id=` + regexp.QuoteMeta(id) + `.*step=` + step)
	}
)

func TestServeSchedulesTriggersReloadsAndStops(t *testing.T) {
	t.Parallel()
	needSandbox(t)
	sb := sandboxtest.Shared(t, sandbox.Options{})
	eps := sb.EtcdEndpoints()
	tmp := t.TempDir() // the drills' work directories: empty again after a clean stop
	hist := filepath.Join(t.TempDir(), "history.db")
	env := []string{"FIREDRILL_HISTORY=" + hist, "TMPDIR=" + tmp, "FIREDRILL_BIN_DIR=" + sb.BinDir(), "FIREDRILL_TOKEN=", "FIREDRILL_SLACK_WEBHOOK="}
	const token = "e2e-s3cret"
	tokenFile := writeFile(t, t.TempDir(), "token", token+"\n")

	dir := t.TempDir()
	schedFile := writeFile(t, dir, "scheduled.yaml", etcdScenario("serve-sched", "@every 20s", eps, "", false))
	writeFile(t, dir, "manual.yaml", etcdScenario("serve-manual", "", eps, "", true))
	// A file reached through a symlink whose target lives elsewhere: changing the target makes
	// no event in the watched directory, so only SIGHUP picks it up.
	elsewhere := t.TempDir()
	hupTarget := writeFile(t, elsewhere, "hup.yaml", etcdScenario("serve-hup", "", eps, "{gen: one}", false))
	if err := os.Symlink(hupTarget, filepath.Join(dir, "hup.yaml")); err != nil {
		t.Fatal(err)
	}

	p := startServe(t, env, "--scenarios", dir, "--token-file", tokenFile, "--kubeconfig", sb.Kubeconfig(),
		"--shutdown-grace", "2s", "--janitor-interval", "1m")

	// A scheduled run appears in the API and passes.
	testkit.EventuallyTrue(t, 4*time.Minute, "a scheduled run of serve-sched passes", func() bool {
		for _, r := range p.runs("serve-sched") {
			if r.Result == drill.Failed || r.Result == drill.Error {
				t.Fatalf("scheduled run %s: %s: %s", r.ID, r.Result, r.Message)
			}
			if r.Trigger == "schedule" && r.Result == drill.Passed && r.ScheduledFor != nil {
				return true
			}
		}
		return false
	})
	code, metrics := p.request("GET", "/metrics", "")
	if code != http.StatusOK || !regexp.MustCompile(`firedrill_runs_total\{result="passed",scenario="serve-sched"\} [1-9]`).Match(metrics) {
		t.Errorf("/metrics: %d, no passed serve-sched run counted:\n%s", code, grepLines(string(metrics), "firedrill_"))
	}

	// The janitor ran at start-up against the sandbox and counted the scratch namespaces.
	testkit.EventuallyTrue(t, time.Minute, "firedrill_scratch_namespaces in /metrics", func() bool {
		_, m := p.request("GET", "/metrics", "")
		return regexp.MustCompile(`(?m)^firedrill_scratch_namespaces \d`).Match(m)
	})

	// Triggering needs the token.
	for _, tok := range []string{"", "wrong"} {
		if code, body := p.request("POST", "/api/v1/scenarios/serve-manual/runs", tok); code != http.StatusUnauthorized && code != http.StatusForbidden {
			t.Errorf("POST with token %q: %d %s, want 401 or 403", tok, code, body)
		}
	}
	if runs := p.runs("serve-manual"); len(runs) != 0 {
		t.Fatalf("a refused trigger started runs: %+v", runs)
	}
	id := trigger(t, p, "serve-manual", token)
	rec := waitRun(t, p, id, 4*time.Minute)
	if rec.Result != drill.Passed || rec.Trigger != "api" || rec.Scenario != "serve-manual" {
		t.Errorf("triggered run %s: %s (%s) trigger %q", id, rec.Result, rec.Message, rec.Trigger)
	}
	if code, _ := p.request("POST", "/api/v1/scenarios/no-such-scenario/runs", token); code != http.StatusNotFound {
		t.Errorf("trigger of an unknown scenario: %d, want 404", code)
	}

	// An edit that breaks the file is shown, and the last good version stays scheduled.
	os.WriteFile(schedFile, []byte("apiVersion: firedrill.dev/v1alpha1\nkind: Scenario\nmetadata: {name: serve-sched}\nspec: [broken\n"), 0o644)
	broke := time.Now()
	testkit.EventuallyTrue(t, time.Minute, "the broken file's error in /api/v1/scenarios", func() bool { return p.scenario("serve-sched").Error != "" })
	if st := p.scenario("serve-sched"); st.Schedule != "@every 20s" {
		t.Errorf("the broken scenario's last good schedule is gone: %+v", st)
	}
	if _, m := p.request("GET", "/metrics", ""); !regexp.MustCompile(`firedrill_scenario_errors\{scenario="serve-sched"\} 1`).Match(m) {
		testkit.EventuallyTrue(t, time.Minute, "firedrill_scenario_errors for serve-sched", func() bool {
			_, m := p.request("GET", "/metrics", "")
			return regexp.MustCompile(`firedrill_scenario_errors\{scenario="serve-sched"\} 1`).Match(m)
		})
	}
	testkit.EventuallyTrue(t, 3*time.Minute, "a run of the last good serve-sched after the file broke", func() bool {
		for _, r := range p.runs("serve-sched") {
			if r.Result == drill.Passed && r.StartedAt.After(broke) {
				return true
			}
		}
		return false
	})

	// SIGHUP reloads.
	next := etcdScenario("serve-hup", "", eps, "{gen: two}", false)
	if err := os.WriteFile(hupTarget+".new", []byte(next), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(hupTarget+".new", hupTarget); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyTrue(t, time.Minute, "serve-hup reloaded after SIGHUP", func() bool { return p.scenario("serve-hup").Labels["gen"] == "two" })
	p.waitLog(regexp.MustCompile(`SIGHUP: reloading scenarios`), time.Minute) // the log is copied from a pipe: it may lag

	// SIGTERM while a drill runs: exit 0, the drill finished or aborted with its cleanup, nothing
	// left running.
	id = trigger(t, p, "serve-manual", token)
	p.waitLog(stepLine(id, "restore"), 3*time.Minute)
	if code := p.stop(syscall.SIGTERM, 5*time.Minute); code != 0 {
		t.Fatalf("serve after SIGTERM: exit %d, want 0\n%s", code, p.stderr.String())
	}
	if left := testkit.ProcessesUnder(tmp); len(left) > 0 {
		t.Errorf("processes of drills left after shutdown:\n%s", strings.Join(left, "\n"))
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Errorf("drills left files in TMPDIR: %v", entries)
	}
	h := firedrill(t, env, "history", "-o", "json", "--limit", "0")
	var all []drill.Record
	if err := json.Unmarshal([]byte(h.stdout), &all); err != nil {
		t.Fatalf("history: %v\n%s%s", err, h.stdout, h.stderr)
	}
	if strings.Contains(h.stderr, "marked") {
		t.Errorf("serve left runs running that a later start had to abort:\n%s", h.stderr)
	}
	found := false
	for _, r := range all {
		if r.Result == drill.Running {
			t.Errorf("run %s still running after shutdown", r.ID)
		}
		if r.ID != id {
			continue
		}
		found = true
		if r.Result != drill.Aborted && r.Result != drill.Passed {
			t.Errorf("the drill in flight at SIGTERM: %s (%s), want aborted or passed", r.Result, r.Message)
		}
		cleaned := false
		for _, s := range r.Steps {
			cleaned = cleaned || s.Name == drill.StepCleanup && s.Result == drill.Passed
		}
		if !cleaned {
			t.Errorf("the drill in flight at SIGTERM did not clean up: %+v", r.Steps)
		}
	}
	if !found {
		t.Errorf("the drill in flight at SIGTERM (%s) is not in the history", id)
	}
}

// trigger starts a run through the API, retrying while the scenario is busy, and returns its id.
func trigger(t *testing.T, p *serveProc, scenario, token string) string {
	t.Helper()
	var id string
	testkit.EventuallyTrue(t, 3*time.Minute, "trigger "+scenario, func() bool {
		code, body := p.request("POST", "/api/v1/scenarios/"+scenario+"/runs", token)
		switch code {
		case http.StatusConflict:
			return false
		case http.StatusAccepted:
		default:
			t.Fatalf("POST /api/v1/scenarios/%s/runs: %d %s", scenario, code, body)
		}
		var v struct{ ID string }
		if err := json.Unmarshal(body, &v); err != nil || v.ID == "" {
			t.Fatalf("trigger answer %s: %v", body, err)
		}
		id = v.ID
		return true
	})
	return id
}

// waitRun polls GET /api/v1/runs/ID until the run is final.
func waitRun(t *testing.T, p *serveProc, id string, timeout time.Duration) drill.Record {
	t.Helper()
	var rec drill.Record
	testkit.EventuallyTrue(t, timeout, "run "+id+" finishes", func() bool {
		code, body := p.request("GET", "/api/v1/runs/"+id, "")
		if code == http.StatusNotFound {
			return false
		}
		if code != http.StatusOK {
			t.Fatalf("GET /api/v1/runs/%s: %d %s", id, code, body)
		}
		rec = drill.Record{}
		if err := json.Unmarshal(body, &rec); err != nil {
			t.Fatalf("GET /api/v1/runs/%s: %v\n%s", id, err, body)
		}
		return rec.Result != drill.Running && rec.Result != ""
	})
	return rec
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

var becameLeader = regexp.MustCompile(`msg="became leader: scheduling"`)

// leaderOf waits until one of two replicas leads and returns it and the other.
func leaderOf(t *testing.T, procs []*serveProc) (lead, other *serveProc) {
	t.Helper()
	testkit.EventuallyTrue(t, 2*time.Minute, "one replica leads", func() bool {
		for i, p := range procs {
			if becameLeader.MatchString(p.stderr.String()) {
				lead, other = p, procs[1-i]
				return true
			}
		}
		return false
	})
	return lead, other
}

// Two replicas, one PostgreSQL, a Lease in the sandbox: the leader is killed, the other takes
// over, and every fire time of the schedule has exactly one record.
func TestServeFailover(t *testing.T) {
	t.Parallel()
	needSandbox(t)
	sb := sandboxtest.Shared(t, sandbox.Options{})
	pg := pgtest.Start(t)
	dsn := pg.NewDatabase(t)
	dir := t.TempDir()
	// With a scratch kube-apiserver the restore takes seconds: long enough to kill the leader in it.
	writeFile(t, dir, "failover.yaml", etcdScenario("failover", "@every 10s", sb.EtcdEndpoints(), "", true))
	lease := fmt.Sprintf("firedrill-failover-%d", time.Now().UnixNano()%1e9)
	tmps := map[*serveProc]string{}
	start := func() *serveProc {
		tmp := t.TempDir()
		env := []string{"TMPDIR=" + tmp, "FIREDRILL_BIN_DIR=" + sb.BinDir(), "FIREDRILL_TOKEN=", "FIREDRILL_SLACK_WEBHOOK="}
		p := startServe(t, env, "--scenarios", dir, "--history", dsn, "--spool-dir", t.TempDir(), "--kubeconfig", sb.Kubeconfig(),
			"--leader-elect", "--lease-namespace", "default", "--lease-name", lease,
			"--lease-duration", "10s", "--renew-deadline", "7s", "--retry-period", "2s", "--janitor-interval", "0")
		tmps[p] = tmp
		return p
	}
	procs := []*serveProc{start(), start()}
	lead, other := leaderOf(t, procs)
	// Without a token, writes are disabled and say so.
	if code, body := other.request("POST", "/api/v1/scenarios/failover/runs", ""); code != http.StatusForbidden {
		t.Errorf("POST without a configured token: %d %s, want 403", code, body)
	}
	finalRuns := func(p *serveProc) int {
		n := 0
		for _, r := range p.runs("failover") {
			if r.Result != drill.Running {
				n++
			}
		}
		return n
	}
	testkit.EventuallyTrue(t, 4*time.Minute, "the leader records two scheduled runs", func() bool { return finalRuns(other) >= 2 })

	// Kill the leader in the middle of a drill.
	restoring := regexp.MustCompile(`msg="drill step".*step=restore`)
	n0 := len(restoring.FindAllString(lead.stderr.String(), -1))
	testkit.EventuallyTrue(t, 2*time.Minute, "the leader restores", func() bool { return len(restoring.FindAllString(lead.stderr.String(), -1)) > n0 })
	if err := lead.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	<-lead.done
	killedPID := lead.cmd.Process.Pid
	testkit.EventuallyTrue(t, time.Minute, "the killed leader's scratch processes are gone", func() bool { return len(testkit.ProcessesUnder(tmps[lead])) == 0 })
	other.waitLog(becameLeader, 3*time.Minute)
	t.Logf("takeover %.1fs after the leader was killed (lease duration 10s)", time.Since(killed).Seconds())
	testkit.EventuallyTrue(t, 4*time.Minute, "the new leader records two runs scheduled after the kill", func() bool {
		n := 0
		for _, r := range other.runs("failover") {
			if r.Result != drill.Running && r.ScheduledFor != nil && r.ScheduledFor.After(killed) {
				n++
			}
		}
		return n >= 2
	})
	runs := other.runs("failover")
	if code := other.stop(syscall.SIGTERM, 3*time.Minute); code != 0 {
		t.Errorf("survivor after SIGTERM: exit %d", code)
	}

	checkFireTimes(t, runs, "@every 10s")
	pids := map[int]bool{}
	for _, r := range runs {
		pids[r.Runner.PID] = true
	}
	abandoned := false
	for _, r := range runs {
		abandoned = abandoned || r.Runner.PID == killedPID && r.Result == drill.Aborted
	}
	if !abandoned {
		t.Errorf("the drill the killed leader was running is not recorded aborted")
	}
	if len(pids) < 2 {
		t.Errorf("records come from %d process(es), want both replicas: %v", len(pids), pids)
	}
}

// checkFireTimes checks the scheduled runs of one scenario: every fire time of schedule from the
// first to the last final record has exactly one record, none still running, and a gap only
// where the scheduler recorded it (one missed record at the newest time missed, naming from
// when); every run passed, or was aborted, missed or skipped.
func checkFireTimes(t *testing.T, runs []drill.Record, schedule string) {
	t.Helper()
	byTime := map[time.Time][]drill.Record{}
	var last time.Time
	for _, r := range runs {
		if r.ScheduledFor == nil || r.Trigger != "schedule" {
			t.Errorf("run %s is not a scheduled run: trigger %q", r.ID, r.Trigger)
			continue
		}
		at := r.ScheduledFor.UTC()
		byTime[at] = append(byTime[at], r)
		if r.Result != drill.Running && at.After(last) {
			last = at
		}
		switch r.Result {
		case drill.Passed, drill.Aborted, drill.Missed, drill.Skipped, drill.Running:
		default:
			t.Errorf("run %s at %s: %s (%s)", r.ID, at, r.Result, r.Message)
		}
	}
	times := make([]time.Time, 0, len(byTime))
	for at := range byTime {
		times = append(times, at)
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	sched, err := cron.ParseStandard(schedule)
	if err != nil {
		t.Fatal(err)
	}
	var seq []string
	for _, at := range times {
		r := byTime[at][0]
		seq = append(seq, fmt.Sprintf("%s %s (%s pid %d)", at.Format("15:04:05"), r.Result, r.Runner.Host, r.Runner.PID))
	}
	t.Logf("fire times: %s", strings.Join(seq, ", "))
	for i, at := range times {
		if at.After(last) {
			break
		}
		if recs := byTime[at]; len(recs) != 1 {
			t.Errorf("fire time %s has %d records: %+v", at, len(recs), recs)
		}
		if byTime[at][0].Result == drill.Running {
			t.Errorf("fire time %s: run %s still running after the takeover", at, byTime[at][0].ID)
		}
		if i == 0 {
			continue
		}
		if want := sched.Next(times[i-1]); !want.Equal(at) {
			r := byTime[at][0]
			if r.Result != drill.Missed || !strings.Contains(r.Message, want.UTC().Format(time.RFC3339)) {
				t.Errorf("fire times lost between %s and %s (%s): the record at %s is %s (%s)", times[i-1], at, schedule, at, r.Result, r.Message)
			}
		}
	}
}

// The history goes away while a drill runs: its record is spooled and written once when the
// history is back.
func TestServeSpoolsWhileHistoryIsDown(t *testing.T) {
	t.Parallel()
	needSandbox(t)
	sb := sandboxtest.Shared(t, sandbox.Options{})
	pg := pgtest.Start(t)
	dsn := pg.NewDatabase(t)
	dir := t.TempDir()
	writeFile(t, dir, "spool.yaml", etcdScenario("spooled", "", sb.EtcdEndpoints(), "", true))
	spool := t.TempDir()
	const token = "spool-token"
	env := []string{"TMPDIR=" + t.TempDir(), "FIREDRILL_BIN_DIR=" + sb.BinDir(), "FIREDRILL_TOKEN=" + token, "FIREDRILL_SLACK_WEBHOOK="}
	p := startServe(t, env, "--scenarios", dir, "--history", dsn, "--spool-dir", spool, "--spool-flush-interval", "1s", "--janitor-interval", "0")

	id := trigger(t, p, "spooled", token)
	p.waitLog(stepLine(id, "restore"), 3*time.Minute)
	pg.Stop(t)
	testkit.EventuallyTrue(t, 4*time.Minute, "the run's record is spooled", func() bool {
		entries, _ := os.ReadDir(spool)
		return len(entries) > 0
	})
	if code, body := p.request("GET", "/readyz", ""); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with the history down: %d %s, want 503", code, body)
	}
	testkit.EventuallyTrue(t, time.Minute, "firedrill_history_spooled_records 1", func() bool {
		_, m := p.request("GET", "/metrics", "")
		return strings.Contains(string(m), "firedrill_history_spooled_records 1")
	})

	pg.Restart(t)
	rec := waitRun(t, p, id, 2*time.Minute)
	if rec.Result != drill.Passed {
		t.Errorf("spooled run %s: %s (%s)", id, rec.Result, rec.Message)
	}
	testkit.EventuallyTrue(t, time.Minute, "the spool is empty", func() bool {
		entries, _ := os.ReadDir(spool)
		_, m := p.request("GET", "/metrics", "")
		return len(entries) == 0 && strings.Contains(string(m), "firedrill_history_spooled_records 0")
	})
	n := 0
	for _, r := range p.runs("spooled") {
		if r.ID == id {
			n++
		}
	}
	if n != 1 {
		t.Errorf("run %s is %d times in the history, want once", id, n)
	}

	// SIGTERM within the (default, 5m) grace: the drill in flight finishes and passes.
	id = trigger(t, p, "spooled", token)
	p.waitLog(stepLine(id, "restore"), 3*time.Minute)
	if code := p.stop(syscall.SIGTERM, 5*time.Minute); code != 0 {
		t.Errorf("serve after SIGTERM: exit %d", code)
	}
	h := firedrill(t, []string{"FIREDRILL_SIGNING_KEY="}, "show", id, "--history", dsn, "-o", "json")
	var rec2 drill.Record
	if err := json.Unmarshal([]byte(h.stdout), &rec2); err != nil || rec2.Result != drill.Passed {
		t.Errorf("the drill in flight at SIGTERM with time to spare: %v %s (%s)\n%s", err, rec2.Result, rec2.Message, h.stderr)
	}
}
