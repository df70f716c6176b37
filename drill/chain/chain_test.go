package chain

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
)

// workedExample is the record of docs/history.md's worked example.
const workedExample = `{"id":"r1","scenario":"demo","trigger":"manual","operator":"me@host","result":"passed","startedAt":"2026-11-27T10:00:00Z","rtoSeconds":12.5,"rpoSeconds":null,"objectives":[],"backup":{"kind":"etcd-snapshot"},"steps":[],"checks":[],"runner":{"host":"h","pid":1},"prevHash":"","hash":"…"}`

func TestWorkedExample(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/history.md")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Canonical([]byte(workedExample))
	if err != nil {
		t.Fatal(err)
	}
	const wantCanonical = `{"backup":{"kind":"etcd-snapshot"},"checks":[],"id":"r1","objectives":[],"operator":"me@host","prevHash":"","result":"passed","rpoSeconds":null,"rtoSeconds":12.5,"runner":{"host":"h","pid":1},"scenario":"demo","startedAt":"2026-11-27T10:00:00Z","steps":[],"trigger":"manual"}`
	if string(c) != wantCanonical {
		t.Errorf("canonical:\n got %s\nwant %s", c, wantCanonical)
	}
	h, err := HashJSON([]byte(workedExample))
	if err != nil {
		t.Fatal(err)
	}
	const golden = "090fa3c78ff94805dc057834246d44735f21e173d08e5ac02739eee155ad4df6"
	if h != golden {
		t.Errorf("hash = %s, want %s", h, golden)
	}
	for _, s := range []string{workedExample, wantCanonical, golden} {
		if !bytes.Contains(doc, []byte(s)) {
			t.Errorf("docs/history.md does not show %s", s)
		}
	}
}

func TestCanonicalStrings(t *testing.T) {
	t.Parallel()
	raw := `{"b":"a\"b\\c\n\t\u0001<>&\u2028é😀","a":[1.50,1e-7,-0,true,false,null],"hash":"x","signature":"y","é":{"z":1,"Z":2}}`
	c, err := Canonical([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	want := "{\"a\":[1.50,1e-7,-0,true,false,null],\"b\":\"a\\\"b\\\\c\\n\\t\\u0001<>&\u2028é😀\",\"é\":{\"Z\":2,\"z\":1}}"
	if string(c) != want {
		t.Errorf("canonical:\n got %s\nwant %s", c, want)
	}
	for _, bad := range []string{`[1]`, `{"a":1} x`, `{`, `"s"`} {
		if _, err := Canonical([]byte(bad)); err == nil {
			t.Errorf("Canonical(%s) accepted", bad)
		}
	}
}

// testRecord is a record with the kinds of values real ones carry: times, floats, evidence.
func testRecord(id string, i int) *drill.Record {
	start := time.Date(2026, 11, 27, 10, i, 0, 123456789, time.UTC)
	end := start.Add(90*time.Second + 7)
	rto, rpo := 42.000001+float64(i), 0.000015
	return &drill.Record{
		ID: id, Scenario: "demo", Labels: map[string]string{"team": "shop"}, Trigger: "manual", Operator: "me@host",
		Result: drill.Passed, StartedAt: start, FinishedAt: &end, RTOSeconds: &rto, RPOSeconds: &rpo,
		Objectives: []drill.ObjectiveRecord{{Name: "rto", TargetSeconds: 600, ActualSeconds: &rto, Met: true}},
		Backup:     drill.BackupRecord{Kind: "etcd-snapshot", Revision: 1<<53 + 1, SHA256: strings.Repeat("ab", 32)},
		Steps:      []drill.StepRecord{{Name: "restore", Result: drill.Passed, StartedAt: start, FinishedAt: &end}},
		Checks: []drill.CheckRecord{{Name: "keys <all>", Type: "etcdKeys", Result: drill.Passed, Message: "ok\n\"quoted\"",
			Evidence: map[string]any{"count": 3, "revision": int64(1<<62 + 3), "ratio": 1e-9, "names": []string{"a", "ü"}}}},
		Runner: drill.RunnerInfo{Host: "h", PID: 7},
	}
}

// sealedChain returns n sealed records as the store writes them (JSON), signed when s is set.
func sealedChain(t *testing.T, n int, s *Signer) [][]byte {
	t.Helper()
	var out [][]byte
	prev := Genesis
	for i := range n {
		r := testRecord("run-"+string(rune('a'+i)), i)
		if err := Seal(r, prev, s); err != nil {
			t.Fatal(err)
		}
		raw, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, raw)
		prev = r.Hash
	}
	return out
}

func testSigner(t *testing.T) (*Signer, string, string) {
	t.Helper()
	dir := t.TempDir()
	priv, pub, err := WriteKeyPair(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := LoadSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s, priv, pub
}

func TestVerifyDetectsEachTampering(t *testing.T) {
	t.Parallel()
	signer, _, pubPath := testSigner(t)
	pub, err := LoadPublicKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	other, _, _ := testSigner(t)
	good := sealedChain(t, 5, signer)

	res := Verify(good, pub)
	if !res.OK() || res.Records != 5 || res.Signed != 5 || !res.SignaturesChecked {
		t.Fatalf("intact chain: %+v", res)
	}
	var last drill.Record
	_ = json.Unmarshal(good[4], &last)
	if res.ChainHead != last.Hash || !strings.Contains(res.String(), "intact: 5 records, chain head "+last.Hash+", signatures ok") {
		t.Errorf("result: %s", res)
	}

	// A decoded record re-encodes to the same hash: what Hash computes for the store is what
	// Verify recomputes from the stored JSON (numbers in evidence kept as written).
	dec := json.NewDecoder(bytes.NewReader(good[2]))
	dec.UseNumber()
	var r drill.Record
	if err := dec.Decode(&r); err != nil {
		t.Fatal(err)
	}
	if h, _ := Hash(&r); h != r.Hash {
		t.Errorf("decoded record hashes to %s, stored %s", h, r.Hash)
	}

	edit := func(raw []byte, from, to string) []byte {
		if !bytes.Contains(raw, []byte(from)) {
			t.Fatalf("%q not in %s", from, raw)
		}
		return bytes.Replace(raw, []byte(from), []byte(to), 1)
	}
	resign := func(raw []byte, s *Signer, prev string) []byte {
		var r drill.Record
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		if err := d.Decode(&r); err != nil {
			t.Fatal(err)
		}
		if err := Seal(&r, prev, s); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(&r)
		return b
	}
	hashOf := func(raw []byte) string {
		var h storedHeader
		_ = json.Unmarshal(raw, &h)
		return h.Hash
	}
	withSig := func(raw []byte, sig string) []byte {
		var m map[string]any
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		_ = d.Decode(&m)
		if sig == "" {
			delete(m, "signature")
		} else {
			m["signature"] = sig
		}
		b, _ := json.Marshal(m)
		return b
	}
	replace := func(i int, raw []byte) [][]byte {
		c := append([][]byte(nil), good...)
		c[i] = raw
		return c
	}
	forged := resign(good[2], nil, hashOf(good[1])) // rehashed, unsigned
	tests := []struct {
		name    string
		records [][]byte
		pub     bool
		pos     int
		problem Problem
	}{
		{"result changed", replace(2, edit(good[2], `"result":"passed"`, `"result":"failed"`)), false, 3, Modified},
		{"evidence number reformatted", replace(1, edit(good[1], `"count":3`, `"count":3.0`)), false, 2, Modified},
		{"hash emptied", replace(3, edit(good[3], `"hash":"`+hashOf(good[3])+`"`, `"hash":""`)), false, 4, Unhashed},
		{"deleted", append(append([][]byte(nil), good[:2]...), good[3:]...), false, 3, Relinked},
		{"first deleted", good[1:], false, 1, Relinked},
		{"inserted copy", append(append(append([][]byte(nil), good[:2]...), good[1]), good[2:]...), false, 3, Relinked},
		{"swapped", [][]byte{good[0], good[2], good[1], good[3], good[4]}, false, 2, Relinked},
		{"rehashed after edit", replace(2, resign(edit(good[2], `"result":"passed"`, `"result":"failed"`), nil, hashOf(good[1]))), false, 4, Relinked},
		{"forged signature", replace(2, resign(good[2], other, hashOf(good[1]))), true, 3, BadSignature},
		{"signature moved", replace(2, withSig(good[2], func() string { var h storedHeader; _ = json.Unmarshal(good[1], &h); return h.Signature }())), true, 3, BadSignature},
		{"unsigned", replace(2, withSig(good[2], "")), true, 3, Unsigned},
		{"forged unsigned record", replace(2, forged), true, 3, Unsigned},
		{"not JSON", replace(4, []byte(`{"id":`)), false, 5, Malformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var k = pub
			if !tc.pub {
				k = nil
			}
			res := Verify(tc.records, k)
			if res.OK() {
				t.Fatalf("not detected: %s", res)
			}
			if res.Break.Position != tc.pos || res.Break.Problem != tc.problem {
				t.Errorf("break = %v, want record %d %s", res.Break, tc.pos, tc.problem)
			}
			if !strings.HasPrefix(res.String(), "TAMPERED: record ") {
				t.Errorf("message: %s", res)
			}
		})
	}
	// Without a key, an unsigned forged record that is correctly linked is not detectable:
	// that is what signing is for (docs/history.md says so).
	if res := Verify(replace(2, forged)[:3], nil); !res.OK() {
		t.Errorf("unsigned relinked record without key: %s", res)
	}
}

func TestUnprotectedPrefix(t *testing.T) {
	t.Parallel()
	legacy := []byte(`{"id":"old","scenario":"s","prevHash":"","hash":""}`)
	chain := sealedChain(t, 2, nil)
	res := Verify(append([][]byte{legacy, legacy}, chain...), nil)
	if !res.OK() || res.Unprotected != 2 || res.Records != 4 || !strings.Contains(res.String(), "first 2 records predate") {
		t.Errorf("legacy prefix: %s", res)
	}
	// With a key, every record must be signed, also those before the chain.
	if res := Verify(append([][]byte{legacy}, chain...), NewSigner(ed25519.NewKeyFromSeed(make([]byte, 32))).Public()); res.OK() || res.Break.Problem != Unsigned || res.Break.Position != 1 {
		t.Errorf("legacy prefix with a key: %s", res)
	}
	// An unhashed record after the chain began is an attack, not history.
	if res := Verify(append(chain, legacy), nil); res.OK() || res.Break.Problem != Unhashed {
		t.Errorf("legacy after chain: %s", res)
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	priv, pub, err := WriteKeyPair(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(priv)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %o", fi.Mode().Perm())
	}
	if _, _, err := WriteKeyPair(dir); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("overwrite: %v", err)
	}
	s, err := LoadSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	p, err := LoadPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Equal(s.Public()) {
		t.Error("public key does not match the private one")
	}
	if _, err := LoadSigner(pub); err == nil {
		t.Error("public key loaded as private")
	}
	if err := os.Chmod(priv, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSigner(priv); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable key: %v", err)
	}
}

// documentedScript is python3 and docs/history.md's verification script, written to a file.
func documentedScript(t *testing.T) (py, script string) {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 is needed to check the documented script: ", err)
	}
	doc, err := os.ReadFile("../../docs/history.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```python\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("no python block in docs/history.md")
	}
	script = filepath.Join(t.TempDir(), "verify-chain.py")
	if err := os.WriteFile(script, m[1], 0o755); err != nil {
		t.Fatal(err)
	}
	return py, script
}

// TestDocumentedScript runs docs/history.md's Python script on a chain firedrill sealed, so
// the documentation is proven to recompute what the code computes.
func TestDocumentedScript(t *testing.T) {
	if testing.Short() {
		t.Skip("runs python3")
	}
	t.Parallel()
	py, script := documentedScript(t)
	signer, _, pubPath := testSigner(t)
	chain := sealedChain(t, 4, signer)
	jsonl := filepath.Join(t.TempDir(), "records.jsonl")
	if err := os.WriteFile(jsonl, append(bytes.Join(chain, []byte("\n")), '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{script, jsonl}
	if err := exec.Command(py, "-c", "import cryptography").Run(); err == nil {
		args = append(args, pubPath)
	} else {
		t.Log("python3 has no cryptography package: checking hashes only")
	}
	out, err := exec.Command(py, args...).CombinedOutput()
	var h storedHeader
	_ = json.Unmarshal(chain[3], &h)
	if err != nil || !strings.Contains(string(out), "intact: 4 records after the genesis (a whole history), chain head "+h.Hash) {
		t.Fatalf("script: %v\n%s", err, out)
	}
	// and it notices a change
	tampered := bytes.Replace(chain[1], []byte(`"result":"passed"`), []byte(`"result":"failed"`), 1)
	if err := os.WriteFile(jsonl, bytes.Join([][]byte{chain[0], tampered, chain[2]}, []byte("\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(py, args...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "record 2 (run-b): modified") {
		t.Fatalf("script on a tampered chain: %v\n%s", err, out)
	}
}

// storedHeader is what the tests read of a stored record.
type storedHeader struct{ ID, Scenario, PrevHash, Hash, Signature string }
