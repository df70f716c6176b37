package chain

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCheckpoint returns a sealed checkpoint that stands for records (a chain from the
// genesis), as a prune leaves it, and its JSON.
func testCheckpoint(t *testing.T, records [][]byte, s *Signer) (Checkpoint, []byte) {
	t.Helper()
	var last storedHeader
	if err := json.Unmarshal(records[len(records)-1], &last); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	c := Checkpoint{ID: "checkpoint-1", Trigger: "manual", Operator: "me@host", Message: "pruned", StartedAt: at, FinishedAt: at,
		Pruned:   Pruned{Before: at, Runs: len(records), Archive: "a.jsonl", Records: len(records), FirstSeq: 1, LastSeq: int64(len(records))},
		LastHash: last.Hash}
	if err := SealCheckpoint(&c, Genesis, s); err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return c, raw
}

// TestCheckpointStandsForTheRecordsBefore: a chain that starts with a checkpoint verifies
// from it on, the records after it linking to its lastHash; a checkpoint is verified like any
// record (hash, link, signature), and only ever first.
func TestCheckpointStandsForTheRecordsBefore(t *testing.T) {
	t.Parallel()
	signer, _, pubPath := testSigner(t)
	pub, err := LoadPublicKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	full := sealedChain(t, 5, signer)
	cp, raw := testCheckpoint(t, full[:3], signer)
	pruned := append([][]byte{raw}, full[3:]...)
	res := Verify(pruned, pub)
	if !res.OK() || res.Records != 3 || res.Signed != 3 || res.Checkpoint == nil || res.Checkpoint.ID != cp.ID ||
		res.Checkpoint.Runs != 3 || res.Checkpoint.LastHash != cp.LastHash || res.Checkpoint.Hash != cp.Hash {
		t.Fatalf("pruned chain: %+v %s", res.Checkpoint, res)
	}
	if want := "intact: 3 records (the first a checkpoint for 3 pruned runs up to " + cp.LastHash[:16] + "…), chain head "; !strings.HasPrefix(res.String(), want) {
		t.Errorf("message %q, want it to start %q", res, want)
	}

	// The archive is a segment: it starts after its first record's prevHash and ends at the
	// checkpoint's lastHash. So does an archive that starts with an earlier checkpoint.
	v := NewVerifier(pub)
	v.Segment()
	for _, r := range full[1:3] {
		v.Add(r)
	}
	var first storedHeader
	_ = json.Unmarshal(full[0], &first)
	if seg := v.Result(); !seg.OK() || seg.After != first.Hash || seg.ChainHead != cp.LastHash || seg.Records != 2 {
		t.Errorf("segment: %+v", seg)
	}
	_, earlier := testCheckpoint(t, full[:1], signer)
	if seg := Verify(append([][]byte{earlier}, full[1:3]...), pub); !seg.OK() || seg.ChainHead != cp.LastHash {
		t.Errorf("archive after an earlier checkpoint: %s", seg)
	}

	edit := func(raw []byte, from, to string) []byte {
		if !bytes.Contains(raw, []byte(from)) {
			t.Fatalf("%q not in %s", from, raw)
		}
		return bytes.Replace(raw, []byte(from), []byte(to), 1)
	}
	other, _, _ := testSigner(t)
	_, foreign := testCheckpoint(t, full[:3], other)
	var fourth storedHeader
	_ = json.Unmarshal(full[3], &fourth)
	reLast := func(lastHash string) []byte {
		c := cp
		c.LastHash = lastHash
		if err := SealCheckpoint(&c, Genesis, signer); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(c)
		return b
	}
	for _, tc := range []struct {
		name    string
		records [][]byte
		pos     int
		problem Problem
		detail  string
	}{
		{"checkpoint removed", full[3:], 1, Relinked, "the checkpoint that stood for them"},
		{"runs counted differently", append([][]byte{edit(raw, `"runs":3`, `"runs":2`)}, full[3:]...), 1, Modified, "changed after it was written"},
		{"last hash changed", append([][]byte{edit(raw, cp.LastHash, fourth.Hash)}, full[3:]...), 1, Modified, "changed after it was written"},
		{"resealed over other records", append([][]byte{reLast(fourth.Hash)}, full[3:]...), 2, Relinked, "the last hash of the checkpoint before it"},
		{"signed by another key", append([][]byte{foreign}, full[3:]...), 1, BadSignature, "does not verify"},
		{"a checkpoint after the first record", append([][]byte{full[0], raw}, full[3:]...), 2, Relinked, "can only be the first record"},
		{"lastHash not a hash", append([][]byte{reLast("nope")}, full[3:]...), 1, Malformed, "not a SHA-256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := Verify(tc.records, pub)
			if res.OK() || res.Break.Position != tc.pos || res.Break.Problem != tc.problem || !strings.Contains(res.Break.Detail, tc.detail) {
				t.Fatalf("got %s; want record %d %s saying %q", res, tc.pos, tc.problem, tc.detail)
			}
			if tc.pos == 1 && tc.name != "checkpoint removed" && !strings.Contains(res.String(), "(checkpoint checkpoint-1)") {
				t.Errorf("the message does not name the checkpoint: %s", res)
			}
		})
	}
}

// workedCheckpoint is docs/history.md's example checkpoint.
const workedCheckpoint = `{"kind":"checkpoint","id":"checkpoint-20270105-030000-5f0c1e","trigger":"schedule","operator":"firedrill@serve-0","message":"pruned 2 runs that finished before 2026-01-01T00:00:00Z into firedrill-history-20251230T101530Z-20251231T101530Z.jsonl","startedAt":"2027-01-05T03:00:00Z","finishedAt":"2027-01-05T03:00:01.5Z","pruned":{"before":"2026-01-01T00:00:00Z","runs":2,"archive":"firedrill-history-20251230T101530Z-20251231T101530Z.jsonl","records":2,"firstSeq":1,"lastSeq":2,"firstRun":"20251230-101500-1a2b3c","lastRun":"20251231-101500-4d5e6f","from":"2025-12-30T10:15:30Z","to":"2025-12-31T10:15:30Z"},"lastHash":"5f0c1e0d3a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d","prevHash":"","hash":"…"}`

// TestWorkedCheckpoint pins the hash of docs/history.md's checkpoint, as TestWorkedExample
// does the run's, and checks that a checkpoint sealed in Go has exactly those members.
func TestWorkedCheckpoint(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/history.md")
	if err != nil {
		t.Fatal(err)
	}
	h, err := HashJSON([]byte(workedCheckpoint))
	if err != nil {
		t.Fatal(err)
	}
	const golden = "b06c1fec388af5247f51167db3323a17a24303e050afcd6902007455678d4071"
	if h != golden {
		t.Errorf("hash = %s, want %s", h, golden)
	}
	for _, s := range []string{workedCheckpoint, golden} {
		if !bytes.Contains(doc, []byte(s)) {
			t.Errorf("docs/history.md does not show %s", s)
		}
	}
	var c Checkpoint
	if err := json.Unmarshal([]byte(workedCheckpoint), &c); err != nil {
		t.Fatal(err)
	}
	if err := SealCheckpoint(&c, Genesis, nil); err != nil {
		t.Fatal(err)
	}
	if c.Hash != golden {
		t.Errorf("sealed in Go: %s, want %s", c.Hash, golden)
	}
}

// TestDocumentedScriptCheckpoints runs docs/history.md's script on a pruned history's records
// (a checkpoint first) and on the archive of a second prune (the first checkpoint first).
func TestDocumentedScriptCheckpoints(t *testing.T) {
	if testing.Short() {
		t.Skip("runs python3")
	}
	t.Parallel()
	py, script := documentedScript(t)
	dir := t.TempDir()
	full := sealedChain(t, 5, nil)
	_, cp := testCheckpoint(t, full[:2], nil)
	var head storedHeader
	_ = json.Unmarshal(full[4], &head)
	run := func(records ...[]byte) (string, error) {
		path := filepath.Join(dir, "records.jsonl")
		if err := os.WriteFile(path, append(bytes.Join(records, []byte("\n")), '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(py, script, path).CombinedOutput()
		return string(out), err
	}
	if out, err := run(append([][]byte{cp}, full[2:]...)...); err != nil || !strings.Contains(out, "intact: 4 records after the genesis (a whole history), chain head "+head.Hash) {
		t.Errorf("pruned history: %v\n%s", err, out)
	}
	if out, err := run(full[2], cp, full[3]); err == nil || !strings.Contains(out, "record 2 (checkpoint-1): deleted, inserted or reordered") {
		t.Errorf("a checkpoint second: %v\n%s", err, out)
	}
	if out, err := run(full[2:]...); err != nil || !strings.Contains(out, "intact: 3 records after") {
		t.Errorf("the records after the checkpoint, as a segment: %v\n%s", err, out)
	}
}
