package chain

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// Problem says how a record breaks the chain.
type Problem string

const (
	// Modified: the record's content does not hash to its stored hash.
	Modified Problem = "modified"
	// Relinked: the record's prevHash is not the hash of the record before it: a record was
	// deleted, inserted or moved here.
	Relinked Problem = "deleted, inserted or reordered"
	// BadSignature: the signature does not verify with the public key.
	BadSignature Problem = "bad signature"
	// Unsigned: a public key was given and the record has no signature.
	Unsigned Problem = "unsigned"
	// Unhashed: a record without a hash after the chain began.
	Unhashed Problem = "no hash"
	// Malformed: the stored record is not a JSON object.
	Malformed Problem = "malformed"
)

// Break is the first record that breaks the chain.
type Break struct {
	Position int // 1-based, in chain order
	ID       string
	Scenario string
	// Kind is the record's kind when it is not a run's (KindCheckpoint).
	Kind    string `json:",omitempty"`
	Problem Problem
	Detail  string // what was found, in words
}

func (b *Break) Error() string {
	return fmt.Sprintf("record %d of the chain (%s): %s: %s", b.Position, b.Record(), b.Problem, b.Detail)
}

// Record names the broken record: "run ID, scenario NAME", or "checkpoint ID".
func (b *Break) Record() string {
	if b.Kind == KindCheckpoint {
		return "checkpoint " + b.ID
	}
	return fmt.Sprintf("run %s, scenario %s", b.ID, b.Scenario)
}

// Result is what a verification found. Its JSON is part of `history verify -o json` and of
// the reports' integrity section (docs/reports.md).
type Result struct {
	Records int `json:"records"` // records seen, the unprotected ones included
	// Unprotected counts records at the start of the history that were written before it had
	// a hash chain (no hash, no prevHash); nothing protects them.
	Unprotected int    `json:"unprotected,omitempty"`
	ChainHead   string `json:"chainHead"` // hash of the last record
	Signed      int    `json:"signed"`    // records with a signature
	// SignaturesChecked: a public key was given and every signature up to ChainHead verified.
	SignaturesChecked bool   `json:"signaturesChecked"`
	KeyFingerprint    string `json:"keyFingerprint,omitempty"`
	// Checkpoint is the checkpoint the chain starts with when it was pruned: the records
	// before it are in an archive.
	Checkpoint *CheckpointRef `json:"checkpoint,omitempty"`
	// After is where a segment starts (Verifier.Segment): its first record's prevHash.
	After string `json:"after,omitempty"`
	Break *Break `json:"broken,omitempty"` // nil when intact
}

// OK reports whether the chain is intact.
func (r Result) OK() bool { return r.Break == nil }

// String says what was found in one line, for `history verify`.
func (r Result) String() string {
	if r.Break != nil {
		return "TAMPERED: " + r.Break.Error()
	}
	sig := fmt.Sprintf("signatures not checked (%d of %d signed; give --public-key to check them)", r.Signed, r.Records-r.Unprotected)
	if r.SignaturesChecked {
		sig = fmt.Sprintf("signatures ok (key %s)", r.KeyFingerprint)
	}
	head := r.ChainHead
	if head == "" {
		head = "(none)"
	}
	records := fmt.Sprintf("%d records", r.Records)
	if c := r.Checkpoint; c != nil {
		records += fmt.Sprintf(" (the first a checkpoint for %d pruned runs up to %s)", c.Runs, short(c.LastHash))
	}
	s := fmt.Sprintf("intact: %s, chain head %s, %s", records, head, sig)
	if r.Unprotected > 0 {
		s += fmt.Sprintf("; WARNING: the first %d records predate the hash chain and are not protected", r.Unprotected)
	}
	return s
}

// Verifier checks records one at a time, in chain order, so that a history of any size is
// verified in constant memory.
type Verifier struct {
	pub ed25519.PublicKey
	res Result
	// chained: a record with a hash was seen; records without one are no longer allowed.
	chained bool
	// segment: the first record's prevHash is where the chain starts (Segment).
	segment bool
	c       canonicalizer
	fields  Fields
	also    func(*Fields) string
}

// NewVerifier returns a Verifier; pub, when not nil, makes every record's signature required.
func NewVerifier(pub ed25519.PublicKey) *Verifier {
	v := &Verifier{pub: pub}
	v.res.SignaturesChecked = pub != nil
	v.res.KeyFingerprint = Fingerprint(pub)
	v.c.fields = &v.fields
	return v
}

// Segment makes v verify a segment of a chain, such as an archive or a report bundle's
// records: its first record's prevHash is taken as where it starts (Result.After), rather
// than the genesis. Call it before the first Add.
func (v *Verifier) Segment() { v.segment = true }

// Also adds a check of each record that is soundly linked into the chain, for what a record
// must agree with outside itself (the history's copies of its fields): check returns what
// is wrong, or "" when nothing is, and a record it faults breaks the chain there as Modified.
func (v *Verifier) Also(check func(*Fields) string) { v.also = check }

// header is what the verifier reads of a record besides its canonical form; it points into
// the record.
type header struct {
	ID, Scenario, PrevHash, Hash, Signature, Kind, LastHash []byte
}

func (v *Verifier) header() header {
	get := func(name string) []byte { s, _ := v.fields.Text(name); return s }
	return header{ID: get("id"), Scenario: get("scenario"), PrevHash: get("prevHash"), Hash: get("hash"), Signature: get("signature"),
		Kind: get("kind"), LastHash: get("lastHash")}
}

// Add checks the next record, given as the JSON the history stores. It returns the Break
// when this record breaks the chain; after a break it checks nothing more, but still reads
// each record so that Fields describes it.
func (v *Verifier) Add(raw []byte) *Break {
	err := v.c.record(raw)
	h := v.header() // of a malformed record, what could be read before the error
	if err != nil {
		v.fields.list = v.fields.list[:0]
	}
	if v.res.Break != nil {
		return v.res.Break
	}
	v.res.Records++
	pos := v.res.Records
	if err != nil {
		return v.fail(pos, h, Malformed, err.Error())
	}
	if len(h.Hash) == 0 && len(h.PrevHash) == 0 && !v.chained {
		if v.pub != nil { // else blanking every hash would pass a check that demands signatures
			return v.fail(pos, h, Unsigned, fmt.Sprintf("the record has no hash and no signature (it predates the hash chain, or they were removed), and every record must be signed by key %s", v.res.KeyFingerprint))
		}
		v.res.Unprotected++
		return nil
	}
	if len(h.Hash) == 0 {
		return v.fail(pos, h, Unhashed, "the record has no hash, but the records before it are chained: its hash was removed")
	}
	sum := sha256.Sum256(v.c.out)
	var got [2 * sha256.Size]byte
	hex.Encode(got[:], sum[:])
	if string(got[:]) != string(h.Hash) {
		return v.fail(pos, h, Modified, fmt.Sprintf("its content hashes to %s, not to its stored hash %s: the record was changed after it was written", short(string(got[:])), short(string(h.Hash))))
	}
	checkpoint := string(h.Kind) == KindCheckpoint
	if checkpoint && pos > 1 {
		return v.fail(pos, h, Relinked, "a checkpoint stands for every record before it, so it can only be the first record of a chain: records were inserted before it, or it was moved")
	}
	if v.segment && pos == 1 {
		v.res.ChainHead, v.res.After = string(h.PrevHash), string(h.PrevHash)
	}
	if string(h.PrevHash) != v.res.ChainHead {
		want, why := v.res.ChainHead, "a record was deleted, inserted or moved before it"
		switch {
		case pos == 1:
			want, why = "empty (the chain's first record)", "the records before it were deleted, or, if the history was pruned, the checkpoint that stood for them"
		case v.res.Checkpoint != nil && pos == 2:
			want += " (the last hash of the checkpoint before it)"
		default:
			want = short(want) + " (the hash of the record before it)"
		}
		return v.fail(pos, h, Relinked, fmt.Sprintf("its prevHash is %s, want %s: %s", orEmpty(short(string(h.PrevHash))), want, why))
	}
	if v.pub != nil {
		if len(h.Signature) == 0 {
			return v.fail(pos, h, Unsigned, fmt.Sprintf("the record has no signature, and every record must be signed by key %s", v.res.KeyFingerprint))
		}
		if !VerifySignature(v.pub, string(h.Hash), string(h.Signature)) {
			return v.fail(pos, h, BadSignature, fmt.Sprintf("its signature does not verify with key %s: it was signed by another key, or forged", v.res.KeyFingerprint))
		}
	}
	if v.also != nil {
		if wrong := v.also(&v.fields); wrong != "" {
			return v.fail(pos, h, Modified, wrong)
		}
	}
	if len(h.Signature) > 0 {
		v.res.Signed++
	}
	v.chained = true
	v.res.ChainHead = string(h.Hash)
	if checkpoint {
		ref, err := checkpointRef(&v.fields, h)
		if err != nil {
			return v.fail(pos, h, Malformed, err.Error())
		}
		v.res.Checkpoint, v.res.ChainHead = ref, ref.LastHash
	}
	return nil
}

// Fields locates the top-level members of the record last added (none when it is not a JSON
// object); valid until the next Add, and as long as that record's bytes are.
func (v *Verifier) Fields() *Fields { return &v.fields }

func (v *Verifier) fail(pos int, h header, p Problem, detail string) *Break {
	v.res.Break = &Break{Position: pos, ID: orEmpty(string(h.ID)), Scenario: orEmpty(string(h.Scenario)), Problem: p, Detail: detail}
	if string(h.Kind) == KindCheckpoint {
		v.res.Break.Kind = KindCheckpoint
	}
	return v.res.Break
}

// Result returns what the records added so far show.
func (v *Verifier) Result() Result { return v.res }

// Verify checks records in chain order; a convenience over Verifier for records in memory.
func Verify(records [][]byte, pub ed25519.PublicKey) Result {
	v := NewVerifier(pub)
	for _, r := range records {
		if v.Add(r) != nil {
			break
		}
	}
	return v.Result()
}

// short abbreviates a hash for messages; the full head is printed where it matters.
func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}

func orEmpty(s string) string {
	if s == "" {
		return "(empty)"
	}
	return s
}
