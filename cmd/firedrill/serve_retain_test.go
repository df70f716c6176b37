package main

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill/chain"
	"github.com/firedrill-dev/firedrill/drill/history"
)

// TestServeRetains: `serve --retain` prunes a signed history at start-up into --archive-dir;
// the API and the dashboard go on listing runs only, and the built binary verifies the
// history and the archive.
func TestServeRetains(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	hist := filepath.Join(dir, "history.db")
	priv, pub, err := chain.WriteKeyPair(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	recs := seedHistory(t, hist, 4, priv) // finished on 2026-11-02: more than a day ago
	env := []string{"FIREDRILL_HISTORY=" + hist, "FIREDRILL_SIGNING_KEY=" + priv, "FIREDRILL_TOKEN=", "FIREDRILL_SLACK_WEBHOOK=", "FIREDRILL_SCENARIOS="}
	scenarios := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--retain", "soon"}, `invalid argument "soon" for "--retain"`},
		{[]string{"--retain", "-1h", "--archive-dir", dir}, "--retain must not be negative"},
		{[]string{"--retain", "400d"}, "--retain needs --archive-dir"},
	} {
		r := firedrill(t, env, append([]string{"serve", "--scenarios", scenarios, "--listen", "127.0.0.1:0", "--janitor-interval", "0"}, tc.args...)...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("serve %v: exit %d, want 2 and %q\n%s", tc.args, r.code, tc.want, r.stderr)
		}
	}

	archives := filepath.Join(dir, "archives")
	p := startServe(t, env, "--scenarios", scenarios, "--janitor-interval", "0", "--retain", "1d", "--archive-dir", archives)
	m := p.waitLog(regexp.MustCompile(`msg="pruned the history" archived=3 archive=(\S+) checkpoint=(\S+) standsFor=3`), time.Minute)
	archive, checkpoint := m[1], m[2]
	if want := filepath.Join(archives, history.ArchiveName(*recs[0].FinishedAt, *recs[2].FinishedAt)); archive != want {
		t.Errorf("archive %s, want %s", archive, want)
	}
	var page runsPage
	p.getJSON("/api/v1/runs", &page)
	if len(page.Runs) != 1 || page.Runs[0].ID != recs[3].ID {
		t.Errorf("GET /api/v1/runs after the prune: %+v; want only the newest run", page.Runs)
	}
	if code, _ := p.request("GET", "/api/v1/runs/"+checkpoint, ""); code != http.StatusNotFound {
		t.Errorf("GET the checkpoint as a run: %d", code)
	}
	code, body := p.request("GET", "/runs", "")
	if code != http.StatusOK || strings.Contains(string(body), checkpoint) || !strings.Contains(string(body), recs[3].ID) {
		t.Errorf("the dashboard's runs page (%d) lists the checkpoint, or not the newest run:\n%s", code, body)
	}
	if code := p.stop(syscall.SIGTERM, time.Minute); code != 0 {
		t.Errorf("serve exited %d", code)
	}

	res := firedrill(t, env, "history", "verify", "--public-key", pub, "--archive", archive)
	if res.code != 0 || !strings.Contains(res.stdout, "intact: 2 records (the first a checkpoint for 3 pruned runs") ||
		!strings.Contains(res.stdout, "archive "+archive+": intact: 3 records from the genesis up to "+recs[2].Hash+", the records checkpoint "+checkpoint+" stands for; signatures ok") {
		t.Errorf("verify after serve pruned: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	if fi, err := os.Stat(archives); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("archive directory: %v %v", fi, err)
	}
}
