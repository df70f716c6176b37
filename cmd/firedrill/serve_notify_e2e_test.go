package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/internal/testkit"
	"github.com/firedrill-dev/firedrill/notify"
	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
)

// routedScenario is a scheduled etcd drill of the sandbox labelled team: shop, with its own
// heartbeat URL, whose key check wants minKeys namespaces: 100000 fails, 4 passes.
func routedScenario(endpoints []string, minKeys int, heartbeatURL string) string {
	s := etcdScenario("shop-routed", "@every 20s", endpoints, "{team: shop}", false)
	s = strings.Replace(s, "prefix: /registry/namespaces/, min: 4}", fmt.Sprintf("prefix: /registry/namespaces/, min: %d}", minKeys), 1)
	return s + fmt.Sprintf("  notify: {heartbeatURL: %q}\n", heartbeatURL)
}

// TestServeRoutesNotificationsEndToEnd runs the built binary's serve with two receivers from a
// notifications file and a scheduled etcd drill of the sandbox that fails until its scenario
// file is fixed: the receiver that matches the drill's labels gets each failure and then one
// recovery, the other receiver nothing, and the scenario's own heartbeat URL a GET after each
// pass and never before one.
func TestServeRoutesNotificationsEndToEnd(t *testing.T) {
	t.Parallel()
	needSandbox(t)
	sb := sandboxtest.Shared(t, sandbox.Options{})
	eps := sb.EtcdEndpoints()
	shop, other, beat := testkit.NewReceiver(t), testkit.NewReceiver(t), testkit.NewReceiver(t)
	const beatPath = "/ping/5f0e8a52-secret"
	notifyFile := writeFile(t, t.TempDir(), "notifications.yaml", fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Notifications
receivers:
  - {name: shop, webhook: %q, matchLabels: {team: shop}}
  - {name: billing, slackWebhook: %q, matchScenarios: ["billing-*"]}
`, shop.URL+"/hook", other.URL+"/services/T0/B0/secret"))
	dir := t.TempDir()
	file := writeFile(t, dir, "shop.yaml", routedScenario(eps, 100000, beat.URL+beatPath))
	hist := filepath.Join(t.TempDir(), "history.db")
	env := []string{"FIREDRILL_HISTORY=" + hist, "TMPDIR=" + t.TempDir(), "FIREDRILL_BIN_DIR=" + sb.BinDir(),
		"FIREDRILL_TOKEN=", "FIREDRILL_READ_TOKEN=", "FIREDRILL_SLACK_WEBHOOK="}
	p := startServe(t, env, "--scenarios", dir, "--notify-config", notifyFile, "--janitor-interval", "0", "--shutdown-grace", "3m")

	events := func() []notify.Event {
		var out []notify.Event
		for _, r := range shop.Requests() {
			var ev notify.Event
			if err := json.Unmarshal(r.Body, &ev); err != nil {
				t.Fatalf("the shop receiver got %s %s that is not an event: %v", r.Method, r.Path, err)
			}
			out = append(out, ev)
		}
		return out
	}
	testkit.EventuallyTrue(t, 5*time.Minute, "the shop receiver gets a failure", func() bool { return len(events()) > 0 })
	if n := len(beat.Requests()); n != 0 {
		t.Errorf("the heartbeat was requested %d times while the drill failed", n)
	}

	// The fix: the scenario file rewritten in place (renamed over), as a deploy would.
	testkit.ReplaceFile(t, file, []byte(routedScenario(eps, 4, beat.URL+beatPath)))
	testkit.EventuallyTrue(t, 6*time.Minute, "the shop receiver gets a recovery", func() bool {
		evs := events()
		return evs[len(evs)-1].Event == notify.EventRecovery
	})
	testkit.EventuallyTrue(t, time.Minute, "the heartbeat after the pass", func() bool { return len(beat.Requests()) > 0 })
	if code := p.stop(syscall.SIGTERM, 5*time.Minute); code != 0 {
		t.Fatalf("serve after SIGTERM: exit %d", code)
	}

	// What the history holds decides what each receiver should have got.
	h := firedrill(t, env, "history", "-o", "json", "--limit", "0", "--scenario", "shop-routed")
	var runs []drill.Record
	if err := json.Unmarshal([]byte(h.stdout), &runs); err != nil {
		t.Fatalf("history: %v\n%s%s", err, h.stdout, h.stderr)
	}
	slices.SortFunc(runs, func(a, b drill.Record) int { return a.StartedAt.Compare(b.StartedAt) })
	var failed, passed []drill.Record
	for _, r := range runs {
		switch r.Result {
		case drill.Failed:
			failed = append(failed, r)
		case drill.Passed:
			passed = append(passed, r)
		case drill.Error:
			t.Fatalf("run %s erred (the drill should only fail or pass): %s", r.ID, r.Message)
		}
	}
	if len(failed) == 0 || len(passed) == 0 || passed[0].StartedAt.Before(failed[len(failed)-1].StartedAt) {
		t.Fatalf("want failed runs, then passed ones; the history has %d failed, %d passed", len(failed), len(passed))
	}

	evs := events()
	t.Logf("%d failed runs, then %d passed; shop got %d events, billing %d requests, the heartbeat %d", len(failed), len(passed), len(evs), len(other.Requests()), len(beat.Requests()))
	if len(evs) != len(failed)+1 {
		t.Fatalf("the shop receiver got %d events for %d failed runs and a recovery: %+v", len(evs), len(failed), evs)
	}
	for i, f := range failed {
		if ev := evs[i]; ev.Event != notify.EventFailure || ev.RunID != f.ID || ev.Result != drill.Failed || ev.Labels["team"] != "shop" ||
			!strings.Contains(ev.Message, "want at least 100000") {
			t.Errorf("event %d: %+v, want the failure of run %s", i, ev, f.ID)
		}
	}
	if rec := evs[len(evs)-1]; rec.Event != notify.EventRecovery || rec.RunID != passed[0].ID || rec.PreviousResult != drill.Failed {
		t.Errorf("last event %+v, want the recovery of run %s after failed", rec, passed[0].ID)
	}
	if got := other.Requests(); len(got) != 0 {
		t.Errorf("the receiver matching billing-* got %d requests for a shop drill", len(got))
	}

	beats := beat.Requests()
	if len(beats) != len(passed) {
		t.Errorf("%d heartbeats for %d passed runs", len(beats), len(passed))
	}
	for _, b := range beats {
		if b.Method != "GET" || b.Path != beatPath || b.At.Before(*passed[0].FinishedAt) {
			t.Errorf("heartbeat %s %s at %s, want GET %s after the first pass ended (%s)", b.Method, b.Path, b.At, beatPath, passed[0].FinishedAt)
		}
	}
	if strings.Contains(p.stderr.String(), "secret") {
		t.Errorf("serve's log names a receiver's or heartbeat's URL:\n%s", grepLines(p.stderr.String(), "secret"))
	}
}

// TestServeTLSAndReadTokenEndToEnd: the built binary with a key pair and a read token serves
// HTTPS only, as curl would see it: 401 without the token, 200 with it or with the session the
// login form sets, the probes and metrics open; a renewed key pair is served at the next
// handshake without a restart.
func TestServeTLSAndReadTokenEndToEnd(t *testing.T) {
	t.Parallel()
	keys, dir := t.TempDir(), t.TempDir()
	certFile, keyFile := filepath.Join(keys, "tls.crt"), filepath.Join(keys, "tls.key")
	testkit.WriteKeyPair(t, certFile, keyFile, 100)
	readToken := writeFile(t, keys, "read-token", "e2e-read-s3cret\n")
	writeFile(t, dir, "manual.yaml", etcdScenario("tls-manual", "", []string{"http://127.0.0.1:1"}, "", false))
	env := []string{"FIREDRILL_HISTORY=" + filepath.Join(t.TempDir(), "history.db"), "FIREDRILL_TOKEN=", "FIREDRILL_READ_TOKEN=", "FIREDRILL_SLACK_WEBHOOK="}
	p := startServe(t, env, "--scenarios", dir, "--janitor-interval", "0", "--read-token-file", readToken,
		"--tls-cert-file", certFile, "--tls-key-file", keyFile)
	p.waitLog(regexp.MustCompile(`url=https://127\.0\.0\.1:\d+/ .*readsNeedToken=true`), time.Minute)
	base := strings.Replace(p.base, "http://", "https://", 1)

	client := &http.Client{Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}}
	do := func(method, path, token string, cookie *http.Cookie, form url.Values) *http.Response {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, _ := http.NewRequest(method, base+path, body)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if cookie != nil {
			req.AddCookie(cookie)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for _, c := range []struct {
		path, token string
		want        int
	}{
		{"/api/v1/scenarios", "", 401}, {"/api/v1/runs", "", 401}, {"/", "", 401},
		{"/api/v1/scenarios", "e2e-read-s3cret", 200}, {"/", "e2e-read-s3cret", 200}, {"/api/v1/runs", "wrong", 401},
		{"/healthz", "", 200}, {"/readyz", "", 200}, {"/metrics", "", 200},
	} {
		if got := do("GET", c.path, c.token, nil, nil).StatusCode; got != c.want {
			t.Errorf("GET %s with token %q: %d, want %d", c.path, c.token, got, c.want)
		}
	}
	login := do("POST", "/login", "", nil, url.Values{"token": {"e2e-read-s3cret"}, "next": {"/api/v1/scenarios"}})
	cookies := login.Cookies()
	if login.StatusCode != http.StatusSeeOther || len(cookies) != 1 || !cookies[0].Secure || !cookies[0].HttpOnly {
		t.Fatalf("login: %d, cookies %+v: want a redirect and one Secure, HttpOnly cookie", login.StatusCode, cookies)
	}
	if got := do("GET", "/api/v1/scenarios", "", cookies[0], nil).StatusCode; got != 200 {
		t.Errorf("GET /api/v1/scenarios with the session cookie: %d", got)
	}

	serial := func() int64 {
		t.Helper()
		conn, err := tls.Dial("tcp", strings.TrimPrefix(base, "https://"), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	if s := serial(); s != 100 {
		t.Fatalf("serial %d, want 100", s)
	}
	testkit.WriteKeyPair(t, certFile, keyFile, 101)
	if s := serial(); s != 101 {
		t.Errorf("after the key pair was renewed: serial %d, want 101", s)
	}
	if code := p.stop(syscall.SIGTERM, time.Minute); code != 0 {
		t.Errorf("serve after SIGTERM: exit %d", code)
	}
}
