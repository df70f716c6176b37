package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/etcddrill"
	"github.com/firedrill-dev/firedrill/drill/history"
	"github.com/firedrill-dev/firedrill/drill/schedule"
	"github.com/firedrill-dev/firedrill/internal/browsertest"
	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
	"github.com/firedrill-dev/firedrill/scenarios"
)

// TestBrowserRunNow is the dashboard end to end: a real history, the real scheduler running a
// real etcd drill against the sandbox, and headless Chromium clicking "run now" as a person
// would, first with a wrong token, then with the right one, until the run's result shows.
func TestBrowserRunNow(t *testing.T) {
	if testing.Short() {
		t.Skip("the browser test starts Chromium and a sandbox; skipped under -short")
	}
	t.Parallel()
	sb := sandboxtest.Shared(t, sandbox.Options{})
	h := openHistory(t)
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))

	// A real etcd drill of the sandbox: snapshot, scratch etcd, two checks.
	name := fmt.Sprintf("browser-%d", time.Now().UnixNano()%1_000_000)
	dir := t.TempDir()
	file := filepath.Join(dir, name+".yaml")
	yaml := fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: %s, labels: {team: dashboard}}
spec:
  objectives: {rto: 10m, rpo: 1h}
  backup:
    etcd:
      take: {endpoints: [%s]}
  restore:
    scratchEtcd: {}
  checks:
    - {name: snapshot integrity, etcdIntegrity: {}}
    - {name: namespaces present, etcdKeys: {prefix: /registry/namespaces/, min: 1}}
`, name, sb.EtcdEndpoints()[0])
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	sc, err := scenarios.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	run := func(ctx context.Context, sc *scenarios.Scenario, tr schedule.Trigger) (*drill.Record, error) {
		d := etcddrill.New(etcddrill.Options{BinDir: sb.BinDir()})
		r := &drill.Runner{Recorder: h, ID: tr.ID, Trigger: tr.Kind, Operator: tr.Operator, WorkRoot: work,
			Runner: drill.RunnerInfo{Host: "browser-test", PID: os.Getpid()}}
		return r.Run(ctx, sc, d)
	}
	finished := make(chan *drill.Record, 4)
	sched := schedule.New(schedule.Options{Run: run, History: h, Logger: log,
		OnFinish: func(r *drill.Record) { finished <- r }})
	sched.Update([]schedule.Entry{{File: file, Scenario: sc, LoadedAt: time.Now()}})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := sched.Shutdown(ctx); err != nil {
			t.Errorf("scheduler shutdown: %v", err)
		}
	})

	const token = "browser-test-token-0123456789"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: New(Options{Runs: h, Scheduler: sched, Token: token, Logger: log, Version: "browser-test"})}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	base := "http://" + ln.Addr().String()

	ctx, browser, within, text := startTab(t)

	row := fmt.Sprintf(`tr[data-scenario=%q]`, name)
	button := chromedp.CSS(row + ` button.run-now`)
	status := row + ` output.run-status`
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatalf("start chromium (%s) and load the dashboard: %v", browser, err)
	}
	within(time.Minute, "the dashboard shows the token field and the run-now button",
		chromedp.WaitVisible(chromedp.CSS(`#token`)), chromedp.WaitVisible(button))
	if before := text(row + ` td.last`); !strings.Contains(before, "never run") {
		t.Errorf("before any run the row says %q", before)
	}

	// A wrong token: the API refuses and the page says why; nothing runs.
	within(time.Minute, "run now with a wrong token shows the refusal",
		chromedp.SendKeys(chromedp.CSS(`#token`), "not-the-token"),
		chromedp.Click(button),
		chromedp.WaitVisible(chromedp.CSS(status+`.bad`)))
	if refusal := text(status); !strings.Contains(refusal, "wrong bearer token") {
		t.Errorf("a wrong token shows %q", refusal)
	}
	if runs, err := h.List(context.Background(), history.Filter{Scenario: name}); err != nil || len(runs) != 0 {
		t.Fatalf("a wrong token started a run: %v %v", runs, err)
	}

	// The right token: the run starts and the page links it.
	within(time.Minute, "run now with the right token links the new run",
		// Select what was typed, so that the keys replace it, as a person would.
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](`(() => { const i = document.getElementById("token"); i.select(); return true })()`)(ctx, tg)
			return err
		}),
		chromedp.SendKeys(chromedp.CSS(`#token`), token),
		chromedp.Click(button),
		chromedp.WaitVisible(chromedp.CSS(status+` a.started-run`)))
	runID := text(status + ` a.started-run`)
	t.Logf("the dashboard started run %s", runID)

	// Wait until the dashboard shows the run's result, reloading as a person would.
	var last string
	deadline := time.Now().Add(8 * time.Minute)
	for {
		c, cancel := context.WithTimeout(ctx, time.Minute)
		err := chromedp.Do(c, chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS(row+` td.last`)))
		if err == nil {
			last, err = chromedp.Run(c, chromedp.Text(chromedp.CSS(row+` td.last`)))
		}
		cancel()
		if err == nil && !strings.Contains(last, "running") && containsAny(last, "passed", "failed", "error", "aborted") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the run's result never showed on the dashboard; last cell %q (err %v)", last, err)
		}
		time.Sleep(2 * time.Second)
	}
	var rec *drill.Record
	select {
	case rec = <-finished:
	case <-time.After(time.Minute):
		t.Fatal("the scheduler never reported the run finished")
	}
	if rec.ID != runID || rec.Result != drill.Passed {
		t.Fatalf("run %s ended %s: %s (the page showed %s: %q)", rec.ID, rec.Result, rec.Message, runID, last)
	}
	if !strings.Contains(last, "passed") {
		t.Errorf("the dashboard shows %q for a passed run", last)
	}
	c, cancel := context.WithTimeout(ctx, time.Minute)
	kept, err := chromedp.Run(c, chromedp.Evaluate[string](`sessionStorage.getItem("firedrill-token")`))
	cancel()
	if err != nil || kept != token {
		t.Errorf("the token is not kept across reloads in sessionStorage: %q %v", kept, err)
	}
	if rate := text(row + ` td:nth-child(5)`); !strings.Contains(rate, "100% (1/1)") {
		t.Errorf("pass rate %q after one passed run", rate)
	}

	// The run's page shows its evidence.
	within(time.Minute, "open the run page from the dashboard",
		chromedp.Click(chromedp.CSS(row+` td.last a`)),
		chromedp.WaitVisible(chromedp.CSS(`pre.evidence`)))
	page := text(`main`)
	for _, want := range []string{runID, "passed", "snapshot integrity", "namespaces present", "etcd-snapshot",
		"dashboard@127.0.0.1", "preflight", "cleanup", "rto"} {
		if !strings.Contains(page, want) {
			t.Errorf("the run page does not show %q:\n%s", want, page)
		}
	}

	// Without JavaScript every page still shows what it has; only the run-now button is gone.
	noJS, cancelNoJS := chromedp.NewContext(ctx) // a second tab
	defer cancelNoJS()
	if err := chromedp.Do(noJS, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
		return err
	}), chromedp.Navigate(base+"/")); err != nil {
		t.Fatalf("open a tab without JavaScript: %v", err)
	}
	c, cancel = context.WithTimeout(noJS, time.Minute)
	defer cancel()
	cell, err := chromedp.Run(c, chromedp.Text(chromedp.CSS(row+` td.last`)))
	if err != nil || !strings.Contains(cell, "passed") {
		t.Errorf("without JavaScript the dashboard shows %q (%v)", cell, err)
	}
	visible, err := chromedp.Run(c, chromedp.Evaluate[bool](`document.querySelector("button.run-now").checkVisibility() || document.querySelector("#token").checkVisibility()`))
	if err != nil || visible {
		t.Errorf("without JavaScript the run-now button or token field shows (it cannot work): %v %v", visible, err)
	}
	if err := chromedp.Do(c, chromedp.Navigate(base+"/runs?scenario="+name)); err != nil {
		t.Fatal(err)
	}
	if list, err := chromedp.Run(c, chromedp.Text(chromedp.CSS(`table.runs`))); err != nil || !strings.Contains(list, runID) {
		t.Errorf("without JavaScript the runs page shows %q (%v)", list, err)
	}
	if err := chromedp.Do(c, chromedp.Navigate(base+"/runs/"+runID)); err != nil {
		t.Fatal(err)
	}
	if ev, err := chromedp.Run(c, chromedp.Text(chromedp.CSS(`pre.evidence`))); err != nil || !strings.Contains(ev, `"revision"`) {
		t.Errorf("without JavaScript the run page's evidence is %q (%v)", ev, err)
	}

	if dir := os.Getenv("FIREDRILL_SCREENSHOT_DIR"); dir != "" {
		screenshot(t, ctx, base+"/", filepath.Join(dir, "dashboard.png"))
		screenshot(t, ctx, base+"/runs/"+runID, filepath.Join(dir, "run.png"))
	}
}

// startTab starts Chromium for t and returns its context, its path for messages, within, which
// runs a group of actions bounded by d (a page that never shows something fails the test with a
// message instead of hanging it), and text, which reads an element's text.
func startTab(t *testing.T) (ctx context.Context, browser string,
	within func(d time.Duration, what string, steps ...chromedp.Action[chromedp.Void]), text func(sel string) string) {
	ctx, browser = browsertest.Start(t, chromedp.WindowSize(1400, 900))
	within = func(d time.Duration, what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		if err := chromedp.Do(c, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text = func(sel string) string {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		s, err := chromedp.Run(c, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return s
	}
	return ctx, browser, within, text
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// screenshot saves a full-page PNG, for a person checking the layout.
func screenshot(t *testing.T, ctx context.Context, url, path string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Errorf("screenshot %s: %v", url, err)
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot %s: %v", url, err)
		return
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Error(err)
	}
}

// TestBrowserLogin is reading behind a token as a person does it: Chromium asks for a run's
// page, gets the login form, is refused a wrong token, logs in with the right one, lands on the
// page it asked for, sees the dashboard's runs, and logs out again.
func TestBrowserLogin(t *testing.T) {
	if testing.Short() {
		t.Skip("the browser test starts Chromium; skipped under -short")
	}
	t.Parallel()
	const readToken = "browser-read-token-0123456789"
	h := openHistory(t)
	recs := fixture(t, h)
	run := recs[0].ID
	sched := &fakeScheduler{status: []schedule.Status{{Name: "shop-etcd", Schedule: "@daily"}, {Name: "shop-velero", Schedule: "@daily"}}}
	srv := serve(t, Options{Runs: h, Scheduler: sched, ReadToken: readToken, Version: "browser-test"})

	ctx, browser, within, text := startTab(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/runs/"+run)); err != nil {
		t.Fatalf("start chromium (%s) and load a run's page: %v", browser, err)
	}
	within(time.Minute, "a run's page without a session shows the login form", chromedp.WaitVisible(chromedp.CSS(`#login-token`)))
	if page := text(`main`); strings.Contains(page, "12 keys") || strings.Contains(page, "etcd-snapshot") {
		t.Errorf("the login form shows the run's evidence:\n%s", page)
	}

	within(time.Minute, "a wrong token is refused",
		chromedp.SendKeys(chromedp.CSS(`#login-token`), "not-the-token"),
		chromedp.Click(chromedp.CSS(`#login-submit`)),
		chromedp.WaitVisible(chromedp.CSS(`#login-problem`)))
	if p := text(`#login-problem`); !strings.Contains(p, "wrong token") {
		t.Errorf("a wrong token shows %q", p)
	}

	within(time.Minute, "the right token opens the page asked for",
		chromedp.SendKeys(chromedp.CSS(`#login-token`), readToken),
		chromedp.Click(chromedp.CSS(`#login-submit`)),
		chromedp.WaitVisible(chromedp.CSS(`pre.evidence`)))
	if page := text(`main`); !strings.Contains(page, run) || !strings.Contains(page, "12 keys") {
		t.Errorf("after login the run page shows:\n%s", page)
	}
	c, cancel := context.WithTimeout(ctx, time.Minute)
	cookies, err := chromedp.Run(c, chromedp.Evaluate[string](`document.cookie`))
	cancel()
	if err != nil || strings.Contains(cookies, sessionCookie) {
		t.Errorf("scripts can read the session cookie (want HttpOnly): %q %v", cookies, err)
	}

	within(time.Minute, "the dashboard shows the scenarios' runs",
		chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-scenario="shop-etcd"] td.last`)))
	for scenario, want := range map[string]string{"shop-etcd": "passed", "shop-velero": "passed"} {
		if cell := text(fmt.Sprintf(`tr[data-scenario=%q] td.last`, scenario)); !strings.Contains(cell, want) {
			t.Errorf("the dashboard's last run of %s: %q, want %s", scenario, cell, want)
		}
	}
	if rate := text(`tr[data-scenario="shop-etcd"] td:nth-child(5)`); !strings.Contains(rate, "(4/6)") {
		t.Errorf("shop-etcd's pass rate %q, want 4 of 6 drilled runs", rate)
	}

	within(time.Minute, "log out, and the dashboard asks for the token again",
		chromedp.Click(chromedp.CSS(`#logout`)),
		chromedp.WaitVisible(chromedp.CSS(`#login-token`)),
		chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#login-token`)))
}
