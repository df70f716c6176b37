package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill/chain"
	"github.com/firedrill-dev/firedrill/report"
)

// untar returns a tar.gz's files by name.
func untar(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = b
	}
}

func TestReportCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "history.db")
	priv, pub, err := chain.WriteKeyPair(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	recs := seedHistory(t, path, 6, priv) // 2026-11-02 03:00 to 08:00, shop and etcd alternating
	base := []string{"report", "--history", path, "--from", "2026-11-02T04:00:00Z", "--to", "2026-11-02"}

	for _, format := range report.Formats {
		out := filepath.Join(dir, "report."+format)
		res := inProcess(append(base, "--format", format, "--out", out)...)
		if res.code != 0 || !strings.Contains(res.stderr, "wrote "+out+": 5 runs") {
			t.Fatalf("%s: exit %d\n%s", format, res.code, res.stderr)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		switch format {
		case "json":
			var doc struct {
				Summary report.Summary    `json:"summary"`
				Records []json.RawMessage `json:"records"`
			}
			if err := json.Unmarshal(b, &doc); err != nil || len(doc.Records) != 5 || !doc.Summary.Integrity.Intact || doc.Summary.Integrity.ChainHead != recs[5].Hash {
				t.Errorf("json: %v, %d records, %+v", err, len(doc.Records), doc.Summary.Integrity)
			}
		case "junit":
			if err := xml.Unmarshal(b, new(struct{})); err != nil || strings.Count(string(b), "<testsuite ") != 2 {
				t.Errorf("junit: %v\n%s", err, b)
			}
		case "csv":
			if n := strings.Count(string(b), "\n"); n != 6 {
				t.Errorf("csv: %d lines\n%s", n, b)
			}
		case "html", "markdown":
			if !strings.Contains(string(b), "firedrill history verify --history "+path) || !strings.Contains(string(b), recs[5].Hash) {
				t.Errorf("%s lacks the verify command or chain head", format)
			}
		}
	}

	// Scope flags: a scenario and a label selector that matches nothing.
	res := inProcess(append(base, "--format", "csv", "--scenario", "shop")...)
	if n := strings.Count(res.stdout, "\n"); res.code != 0 || n != 3 {
		t.Errorf("--scenario shop: exit %d, %d lines\n%s", res.code, n, res.stdout)
	}
	if res := inProcess(append(base, "--format", "csv", "--label", "team=none")...); res.code != 0 || strings.Count(res.stdout, "\n") != 1 {
		t.Errorf("--label: exit %d\n%s", res.code, res.stdout)
	}

	// The bundle: both reports, the chain segment as stored, the verification and the key.
	bundle := filepath.Join(dir, "evidence.tar.gz")
	if res := inProcess(append(base, "--bundle", bundle, "--public-key", pub)...); res.code != 0 {
		t.Fatalf("bundle: exit %d\n%s", res.code, res.stderr)
	}
	files := untar(t, bundle)
	for _, name := range []string{"report.html", "report.json", "records.jsonl", "verify.txt", "verify-chain.py", chain.PublicKeyFile} {
		if len(files[name]) == 0 {
			t.Errorf("bundle lacks %s (has %d files)", name, len(files))
		}
	}
	lines := strings.Split(strings.TrimSpace(string(files["records.jsonl"])), "\n")
	var raws [][]byte
	for _, l := range lines {
		raws = append(raws, []byte(l))
	}
	// records.jsonl is recs[1:] as stored: a valid stretch of the chain after recs[0].
	if len(lines) != 5 || !strings.Contains(lines[0], `"prevHash":"`+recs[0].Hash+`"`) {
		t.Errorf("records.jsonl: %d lines", len(lines))
	}
	for i, raw := range raws {
		h, _ := chain.HashJSON(raw)
		if h != recs[i+1].Hash {
			t.Errorf("records.jsonl line %d hashes to %s, want %s", i+1, h, recs[i+1].Hash)
		}
	}
	// The auditor's way: the bundle's own script on the bundle's records and key.
	if !testing.Short() {
		py, err := exec.LookPath("python3")
		if err != nil {
			t.Fatal("python3 is needed to run the bundle's verify-chain.py: ", err)
		}
		unpacked := t.TempDir()
		for name, b := range files {
			if err := os.WriteFile(filepath.Join(unpacked, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		args := []string{"verify-chain.py", "records.jsonl"}
		if exec.Command(py, "-c", "import cryptography").Run() == nil {
			args = append(args, chain.PublicKeyFile)
		}
		cmd := exec.Command(py, args...)
		cmd.Dir = unpacked
		out, err := cmd.CombinedOutput()
		if want := "intact: 5 records after " + recs[0].Hash + ", chain head " + recs[5].Hash; err != nil || !strings.Contains(string(out), want) {
			t.Errorf("verify-chain.py: %v\n%s\nwant %s", err, out, want)
		}
	}
	if !bytes.Contains(files["verify.txt"], []byte("result:       INTACT")) || !bytes.Contains(files["verify.txt"], []byte("signatures:   verified")) {
		t.Errorf("verify.txt:\n%s", files["verify.txt"])
	}

	// Misuse.
	for _, args := range [][]string{{"--format", "pdf"}, {"--since", "7d", "--from", "2026-01-01"}, {"--from", "yesterday"}, {"--from", "2026-11-03", "--to", "2026-11-01"}, {"--label", "a in ("}} {
		if res := inProcess(append([]string{"report", "--history", path}, args...)...); res.code != 2 {
			t.Errorf("%v: exit %d %s", args, res.code, res.stderr)
		}
	}
}

func TestReportOfTamperedHistoryExits1(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "history.db")
	recs := seedHistory(t, path, 3, "")
	db := sqliteTamper(t, path)
	db.exec(t, `DELETE FROM runs WHERE seq = 2`)
	out := filepath.Join(t.TempDir(), "r.html")
	res := inProcess("report", "--history", path, "--out", out)
	if res.code != 1 || !strings.Contains(res.stderr, "hash chain is broken") {
		t.Errorf("exit %d\n%s", res.code, res.stderr)
	}
	b, _ := os.ReadFile(out)
	if !bytes.Contains(b, []byte("TAMPERED.")) || !bytes.Contains(b, []byte(recs[2].ID)) {
		t.Errorf("the report does not say the history is broken")
	}
}

// TestEditedColumnIsTamperingForReportsToo edits only a column that copies a record's field
// (the result, which `history --result` filters on) and leaves every record intact: `history
// verify` exits 1 naming the run and the column, and the report, its bundle's verify.txt and
// the JSON say the same and do not call the history intact.
func TestEditedColumnIsTamperingForReportsToo(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "history.db")
	recs := seedHistory(t, path, 4, "")
	sqliteTamper(t, path).exec(t, `UPDATE runs SET result = 'failed' WHERE seq = 3`)
	named := fmt.Sprintf("record 3 of the chain (run %s, scenario %s): modified: column result is \"failed\", the record says \"passed\"", recs[2].ID, recs[2].Scenario)

	res := verifyHistory(path)
	if res.code != 1 || !strings.Contains(res.stdout, "TAMPERED: "+named) {
		t.Errorf("history verify: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	html, bundle := filepath.Join(dir, "report.html"), filepath.Join(dir, "bundle.tar.gz")
	rep := inProcess("report", "--history", path, "--out", html, "--bundle", bundle)
	if rep.code != 1 || !strings.Contains(rep.stderr, named) {
		t.Errorf("report: exit %d\n%s", rep.code, rep.stderr)
	}
	page, _ := os.ReadFile(html)
	statement := regexp.MustCompile(`(?s)<p id="integrity-statement">(.*?)</p>`).FindSubmatch(page)
	if statement == nil || !bytes.Contains(statement[1], []byte("TAMPERED.")) || bytes.Contains(statement[1], []byte("was intact")) ||
		!bytes.Contains(statement[1], []byte(recs[2].ID)) || !bytes.Contains(statement[1], []byte("column result is")) {
		t.Errorf("the page's integrity statement: %s", statement)
	}
	files := untar(t, bundle)
	if v := files["verify.txt"]; !bytes.Contains(v, []byte("result:       TAMPERED")) || !bytes.Contains(v, []byte(recs[2].ID)) {
		t.Errorf("verify.txt:\n%s", v)
	}
	var doc struct{ Summary report.Summary }
	if err := json.Unmarshal(files["report.json"], &doc); err != nil || doc.Summary.Integrity.Intact || doc.Summary.Integrity.Break == nil ||
		doc.Summary.Integrity.Break.Position != 3 || doc.Summary.Integrity.Message != strings.TrimSpace(res.stdout) {
		t.Errorf("report.json: %v %+v", err, doc.Summary.Integrity)
	}
}

func TestParseScope(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	s, err := parseScope(reportFlags{since: "7d", to: "2026-11-26", selector: "team=shop"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if !s.From.Equal(now.AddDate(0, 0, -7)) || !s.To.Equal(time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)) || s.Labels.String() != "team=shop" {
		t.Errorf("scope %+v", s)
	}
	if got := verifyCommand(reportFlags{history: "postgres://u:pw@db/h?sslmode=disable", publicKey: "/k/my key.pub"}); got != "firedrill history verify --history 'postgres://u:xxxxx@db/h?sslmode=disable' --public-key '/k/my key.pub'" {
		t.Errorf("verify command: %s", got)
	}
}
