package server

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/schedule"
)

// getPage GETs an HTML page and wants status.
func getPage(t *testing.T, url string, status int) string {
	t.Helper()
	code, h, body := call(t, http.MethodGet, url, "", "")
	if code != status {
		t.Fatalf("GET %s: status %d, want %d\n%s", url, code, status, body)
	}
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("GET %s: content type %q", url, ct)
	}
	return body
}

func mustContain(t *testing.T, page, where string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(page, w) {
			t.Errorf("%s does not show %q", where, w)
		}
	}
}

// scriptTags finds every <script ...> element a page has.
var scriptTag = regexp.MustCompile(`(?i)<script[^>]*>`)

func TestDashboardEscapesHostileText(t *testing.T) {
	t.Parallel()
	h := openHistory(t)
	const evil = `<script>alert("x")</script>`
	const evilImg = `<img src=x onerror=alert(1)>`
	name := "shop" + evil
	rec := record("20261120-100000-aaaaaa", name, drill.Failed, 0)
	rec.Message = "restore failed: " + evil
	rec.Operator = evilImg
	rec.Labels = map[string]string{"team": evilImg}
	rec.Checks[0].Message = evilImg
	rec.Checks[0].Evidence = map[string]any{"note": "</pre>" + evil, "keys": 3}
	rec.Steps[1].Message = evil
	rec.Backup.Name = evilImg
	rec.Target = &drill.TargetRecord{Kind: "scratchNamespace", Namespaces: map[string]string{"shop": "shop-drill-" + evil}}
	store(t, h, rec)
	sched := &fakeScheduler{status: []schedule.Status{{Name: name, File: "/s/" + evilImg + ".yaml", Schedule: "@daily",
		Err: "line 3: " + evil, Labels: map[string]string{"x": evil}}}}
	srv := serve(t, Options{Runs: h, Scheduler: sched, Token: "t"})

	for _, path := range []string{"/", "/runs", "/runs?scenario=" + strings.ReplaceAll(name, "<", "%3C"), "/runs/" + rec.ID, "/runs/" + "nope" + "%3Cscript%3E"} {
		status := http.StatusOK
		if strings.Contains(path, "nope") {
			status = http.StatusNotFound
		}
		page := getPage(t, srv.URL+path, status)
		if strings.Contains(page, evil) || strings.Contains(page, evilImg) || strings.Contains(page, "<script>alert") {
			t.Errorf("%s renders hostile text unescaped:\n%s", path, page)
		}
		for _, tag := range scriptTag.FindAllString(page, -1) {
			if tag != `<script src="/static/dashboard.js">` {
				t.Errorf("%s has a script element that is not ours: %s", path, tag)
			}
		}
		if !strings.Contains(page, "&lt;script&gt;") && !strings.Contains(page, "%3cscript%3e") {
			t.Errorf("%s does not show the hostile text escaped", path)
		}
	}
	run := getPage(t, srv.URL+"/runs/"+rec.ID, http.StatusOK)
	// The evidence is pretty-printed JSON, escaped.
	mustContain(t, run, "the run page", `&#34;keys&#34;: 3`, `&lt;/pre&gt;`, "evidence")
}

func TestDashboardShowsScenarios(t *testing.T) {
	t.Parallel()
	h := openHistory(t)
	// shop-etcd: newest first passed, failed, passed, passed (RTO 30.0, 31.0, -, 33.0 s by start day).
	var runs []*drill.Record
	for i, res := range []drill.Result{drill.Passed, drill.Passed, drill.Failed, drill.Passed} {
		r := record("20261120-10000"+string(rune('0'+i))+"-aaaaaa", "shop-etcd", res, time.Duration(i)*24*time.Hour)
		runs = append(runs, r)
	}
	store(t, h, runs...)
	now := t0.Add(4 * 24 * time.Hour)
	sched := &fakeScheduler{status: []schedule.Status{
		{Name: "broken", File: "/s/broken.yaml", Err: "spec.restore: exactly one of scratchEtcd, scratchNamespace is required"},
		{Name: "shop-etcd", File: "/s/etcd.yaml", Schedule: "30 3 * * *", TimeZone: "UTC", Interval: 24 * time.Hour,
			NextRun: now.Add(3*time.Hour + 30*time.Minute)},
	}}
	leader := true
	srv := serve(t, Options{Runs: h, Scheduler: sched, Now: func() time.Time { return now }, Version: "v9.9.9",
		Leader: func() bool { return leader }})

	page := getPage(t, srv.URL+"/", http.StatusOK)
	mustContain(t, page, "the dashboard",
		"1 scenario file with errors", "exactly one of scratchEtcd", // prominent error
		"30 3 * * *", "in 3h30m", // schedule, next run
		`class="badge r-passed"`,                                                        // last result
		"75% (3/4)",                                                                     // pass rate
		`<svg class="spark"`, "<polyline", "RTO, oldest to newest: 30.0s, 31.0s, 33.0s", // trend
		"leader: schedules drills", "v9.9.9",
		`id="writes-disabled"`, "--token-file or FIREDRILL_TOKEN", // no token: no button
		"never run")
	if strings.Contains(page, `class="run-now"`) || strings.Contains(page, "dashboard.js") {
		t.Error("the dashboard offers run now while writes are disabled")
	}

	const token = "dashboard-test-token-42"
	withToken := serve(t, Options{Runs: h, Scheduler: sched, Token: token, Leader: func() bool { return false }})
	page = getPage(t, withToken.URL+"/", http.StatusOK)
	mustContain(t, page, "the dashboard with a token", `class="run-now" data-scenario="shop-etcd" hidden`,
		`<script src="/static/dashboard.js">`, `id="token"`, "follower: another replica schedules", "<noscript>")
	if strings.Contains(page, token) {
		t.Error("the page contains the token: the browser must hold it, not the server's HTML")
	}

	// The runs list, filtered and paged without JavaScript.
	list := getPage(t, srv.URL+"/runs?scenario=shop-etcd&limit=3", http.StatusOK)
	if n := strings.Count(list, `<tr class="run"`); n != 3 {
		t.Errorf("runs page shows %d runs, want 3", n)
	}
	mustContain(t, list, "the runs page", `<a class="next" href="/runs?cursor=`, "scenario=shop-etcd", `<option value="shop-etcd" selected>`)
	next := regexp.MustCompile(`class="next" href="([^"]+)"`).FindStringSubmatch(list)
	if next == nil {
		t.Fatal("no link to older runs")
	}
	older := getPage(t, srv.URL+strings.ReplaceAll(next[1], "&amp;", "&"), http.StatusOK)
	if n := strings.Count(older, `<tr class="run"`); n != 1 || !strings.Contains(older, runs[0].ID) || strings.Contains(older, `class="next"`) {
		t.Errorf("second page: %d runs, want only the oldest, %s", n, runs[0].ID)
	}
	bad := getPage(t, srv.URL+"/runs?since=soon", http.StatusBadRequest)
	mustContain(t, bad, "a bad filter", `id="filter-error"`, "RFC 3339")

	// A run page: steps, checks with evidence, objectives, backup.
	run := getPage(t, srv.URL+"/runs/"+runs[3].ID, http.StatusOK)
	mustContain(t, run, "the run page", runs[3].ID, "preflight", "restore", "etcdKeys", "12 keys", "&#34;keys&#34;: 12",
		"rto", "5m00s", "33.0s", "etcd-snapshot", "revision", "abababababababab", "4.0 KiB")
	getPage(t, srv.URL+"/runs/20261120-10000", http.StatusConflict)
	mustContain(t, getPage(t, srv.URL+"/runs/20990101", http.StatusNotFound), "an unknown run", "no such run")

	// Static files are served, with a stylesheet the pages link.
	code, _, css := call(t, http.MethodGet, srv.URL+"/static/style.css", "", "")
	if code != http.StatusOK || !strings.Contains(css, ".badge.r-passed") {
		t.Errorf("style.css: %d", code)
	}
}

func TestSparkline(t *testing.T) {
	t.Parallel()
	if got := sparkline(nil, nil); got != "" {
		t.Errorf("no values drew %q", got)
	}
	one := string(sparkline([]float64{12}, nil))
	if !strings.Contains(one, "<circle") || strings.Contains(one, "<polyline") {
		t.Errorf("one value: %s", one)
	}
	target := 100.0
	svg := string(sparkline([]float64{50, 100, 25}, &target))
	// Height 28 with 3 px padding: 100 (the top) is at y=3, 50 at y=14, 25 at y=19.5; x spans 3..117.
	for _, want := range []string{`points="3.0,14.0 60.0,3.0 117.0,19.5"`, `<line class="target" x1="3" x2="117" y1="3.0" y2="3.0"`, `cx="117.0" cy="19.5"`} {
		if !strings.Contains(svg, want) {
			t.Errorf("sparkline lacks %s:\n%s", want, svg)
		}
	}
}
