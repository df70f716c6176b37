package server

import (
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill/schedule"
)

func TestLoadToken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tok, empty := filepath.Join(dir, "token"), filepath.Join(dir, "empty")
	os.WriteFile(tok, []byte("  s3cret\n"), 0o600)
	os.WriteFile(empty, []byte(" \n"), 0o600)
	if got, err := LoadToken(tok); got != "s3cret" || err != nil {
		t.Errorf("LoadToken = %q, %v; want s3cret", got, err)
	}
	if _, err := LoadToken(empty); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Errorf("an empty token file: %v", err)
	}
	if _, err := LoadToken(filepath.Join(dir, "none")); err == nil {
		t.Error("a missing token file: no error")
	}
}

// With a read token, every read needs it (or the write token, or a session from /login);
// /healthz, /readyz, /metrics, /static/ and the login form stay open; a session never writes.
func TestReadAuth(t *testing.T) {
	t.Parallel()
	const readToken, writeToken = "read-token-0123456789abcdef", "write-token-0123456789abcdef"
	h := openHistory(t)
	recs := fixture(t, h)
	now := t0.Add(9 * 24 * time.Hour)
	sched := &fakeScheduler{status: []schedule.Status{{Name: "shop-etcd"}, {Name: "shop-velero"}},
		trigger: func(string, string) (string, error) { return "20261130-000000-abcdef", nil }}
	srv := serve(t, Options{Runs: h, Scheduler: sched, Token: writeToken, ReadToken: readToken, Gatherer: newRegistry(),
		Now: func() time.Time { return now }})
	run := recs[0].ID

	reads := []string{"/api/v1/scenarios", "/api/v1/runs", "/api/v1/runs/" + run, "/", "/runs", "/runs/" + run}
	for _, path := range reads {
		code, hdr, body := call(t, http.MethodGet, srv.URL+path, "", "")
		// The login form names the page asked for (to return there), nothing the history holds.
		if code != http.StatusUnauthorized || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") ||
			strings.Contains(body, "12 keys") || strings.Contains(body, "shop-velero") || strings.Contains(strings.Replace(body, path, "", 1), run) {
			t.Errorf("GET %s without a token: %d %q, or it shows what the history holds:\n%s", path, code, hdr.Get("WWW-Authenticate"), body)
		}
		if strings.HasPrefix(path, "/api/") {
			if !strings.Contains(body, "--read-token-file") || hdr.Get("Content-Type") != "application/json" {
				t.Errorf("GET %s without a token: the API error does not say what to do: %s", path, body)
			}
		} else if !strings.Contains(body, `name="token"`) || !strings.Contains(body, `name="next" value="`+path+`"`) || strings.Contains(body, `href="/runs"`) {
			t.Errorf("GET %s without a token: not the login form that returns here, or it shows the navigation:\n%s", path, body)
		}
		for _, tok := range []string{readToken, writeToken} {
			if code, _, body := call(t, http.MethodGet, srv.URL+path, tok, ""); code != http.StatusOK {
				t.Errorf("GET %s with a bearer token: %d %s", path, code, body)
			}
		}
		code, hdr, _ = call(t, http.MethodGet, srv.URL+path, "guess", "")
		if code != http.StatusUnauthorized || !strings.Contains(hdr.Get("WWW-Authenticate"), "invalid_token") {
			t.Errorf("GET %s with a wrong token: %d %q", path, code, hdr.Get("WWW-Authenticate"))
		}
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/static/style.css", "/login"} {
		if code, _, body := call(t, http.MethodGet, srv.URL+path, "", ""); code != http.StatusOK {
			t.Errorf("GET %s without a token: %d, want it open: %s", path, code, body)
		}
	}

	// Logging in: a wrong token is refused, the right one sets a session cookie and returns to
	// where the user was going, and never to another host.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	login := func(token, next string) *http.Response {
		t.Helper()
		resp, err := noRedirect.PostForm(srv.URL+"/login", url.Values{"token": {token}, "next": {next}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := login("guess", "/runs"); resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
		t.Errorf("login with a wrong token: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	resp := login(readToken, "/runs/"+run)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/runs/"+run || len(resp.Cookies()) != 1 {
		t.Fatalf("login: %d to %q, cookies %v", resp.StatusCode, resp.Header.Get("Location"), resp.Cookies())
	}
	session := resp.Cookies()[0]
	if !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || session.Secure || session.Path != "/" ||
		session.MaxAge != int(sessionLifetime/time.Second) || strings.Contains(session.Value, readToken) {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, not Secure over plain HTTP, Path=/, 12h, without the token", session)
	}
	if resp := login(writeToken, "//evil.example/x"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Errorf("login with the write token and a foreign next: %d to %q, want / ", resp.StatusCode, resp.Header.Get("Location"))
	}
	withCookie := func(method, path string, c *http.Cookie) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		req.AddCookie(c)
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, path := range reads {
		if code, body := withCookie(http.MethodGet, path, session); code != http.StatusOK {
			t.Errorf("GET %s with the session cookie: %d %s", path, code, body)
		}
	}
	if _, body := withCookie(http.MethodGet, "/runs/"+run, session); !strings.Contains(body, `id="logout"`) || !strings.Contains(body, "12 keys") {
		t.Errorf("the run page after login lacks its evidence or the log-out button:\n%s", body)
	}
	if code, _ := withCookie(http.MethodPost, "/api/v1/scenarios/shop-etcd/runs", session); code != http.StatusUnauthorized {
		t.Errorf("a trigger with the session cookie only: %d, want 401 (writes need the write token in a header)", code)
	}
	expired := *session
	expired.Value = sessionFor(t, readToken, now.Add(-time.Minute))
	forged := *session
	forged.Value = sessionFor(t, "another token", now.Add(time.Hour))
	tampered := *session
	tampered.Value = strings.Replace(session.Value, ".", "0.", 1) // a later expiry, the same MAC
	// Another replica with the same read token made this one: it is as good as our own.
	replica := *session
	replica.Value = sessionFor(t, readToken, now.Add(time.Hour))
	if code, body := withCookie(http.MethodGet, "/api/v1/runs", &replica); code != http.StatusOK {
		t.Errorf("a session cookie from a replica with the same token: %d %s", code, body)
	}
	for name, c := range map[string]*http.Cookie{"expired": &expired, "signed with another token": &forged, "tampered": &tampered} {
		if code, _ := withCookie(http.MethodGet, "/api/v1/runs", c); code != http.StatusUnauthorized {
			t.Errorf("a session cookie %s: %d, want 401", name, code)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/logout", nil)
	req.AddCookie(session)
	out, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out.Body.Close()
	if cs := out.Cookies(); out.StatusCode != http.StatusSeeOther || len(cs) != 1 || cs[0].Name != sessionCookie || cs[0].MaxAge >= 0 {
		t.Errorf("logout: %d, cookies %v: want the session cookie cleared", out.StatusCode, cs)
	}
}

// sessionFor makes the session cookie a server with readToken would set, ending at expiry.
func sessionFor(t *testing.T, readToken string, expiry time.Time) string {
	t.Helper()
	s := &server{opts: Options{ReadToken: readToken}}
	return s.sessionValue(expiry)
}

// Without a read token everything reads as before, and /login has nothing to do.
func TestReadsOpenWithoutReadToken(t *testing.T) {
	t.Parallel()
	h := openHistory(t)
	recs := fixture(t, h)
	srv := serve(t, Options{Runs: h, Scheduler: &fakeScheduler{status: []schedule.Status{{Name: "shop-etcd"}}}, Token: "write-token"})
	for _, path := range []string{"/api/v1/scenarios", "/api/v1/runs/" + recs[0].ID, "/", "/runs/" + recs[0].ID} {
		code, _, body := call(t, http.MethodGet, srv.URL+path, "", "")
		if code != http.StatusOK || strings.Contains(body, `id="logout"`) {
			t.Errorf("GET %s: %d, or it offers to log out:\n%s", path, code, body)
		}
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(srv.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Errorf("GET /login without a read token: %d to %q, want a redirect to /", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestLocalPath(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/runs/abc?x=1": "/runs/abc?x=1", "/": "/", "": "/", "runs": "/", "//evil.example/": "/",
		`/\evil.example`: "/", "https://evil.example/": "/", "javascript:alert(1)": "/", "/%zz": "/",
	} {
		if got := localPath(in); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}
