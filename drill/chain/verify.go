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
	Problem  Problem
	Detail   string // what was found, in words
}

func (b *Break) Error() string {
	return fmt.Sprintf("record %d of the chain (run %s, scenario %s): %s: %s", b.Position, b.ID, b.Scenario, b.Problem, b.Detail)
}

// Result is what a verification found.
type Result struct {
	Records int // records seen, the unprotected ones included
	// Unprotected counts records at the start of the history that were written before it had
	// a hash chain (no hash, no prevHash); nothing protects them.
	Unprotected int
	Head        string // hash of the last record; the chain head
	Signed      int    // records with a signature
	// SignaturesChecked: a public key was given and every signature up to Head verified.
	SignaturesChecked bool
	KeyFingerprint    string
	Break             *Break // nil when intact
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
	head := r.Head
	if head == "" {
		head = "(none)"
	}
	s := fmt.Sprintf("intact: %d records, chain head %s, %s", r.Records, head, sig)
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
}

// NewVerifier returns a Verifier; pub, when not nil, makes every record's signature required.
func NewVerifier(pub ed25519.PublicKey) *Verifier {
	v := &Verifier{pub: pub}
	v.res.SignaturesChecked = pub != nil
	v.res.KeyFingerprint = Fingerprint(pub)
	return v
}

// header is what the verifier reads of a record besides its canonical form.
type header struct {
	ID, Scenario, PrevHash, Hash, Signature string
}

// Add checks the next record, given as the JSON the history stores. It returns the Break
// when this record breaks the chain; after a break it checks nothing more.
func (v *Verifier) Add(raw []byte) *Break {
	if v.res.Break != nil {
		return v.res.Break
	}
	v.res.Records++
	pos := v.res.Records
	top := map[string]string{"id": "", "scenario": "", "prevHash": "", "hash": "", "signature": ""}
	canonical, err := canonicalRecord(raw, top)
	h := header{ID: top["id"], Scenario: top["scenario"], PrevHash: top["prevHash"], Hash: top["hash"], Signature: top["signature"]}
	if err != nil {
		return v.fail(pos, h, Malformed, err.Error())
	}
	if h.Hash == "" && h.PrevHash == "" && !v.chained {
		if v.pub != nil { // else blanking every hash would pass a check that demands signatures
			return v.fail(pos, h, Unsigned, fmt.Sprintf("the record has no hash and no signature (it predates the hash chain, or they were removed), and every record must be signed by key %s", v.res.KeyFingerprint))
		}
		v.res.Unprotected++
		return nil
	}
	if h.Hash == "" {
		return v.fail(pos, h, Unhashed, "the record has no hash, but the records before it are chained: its hash was removed")
	}
	sum := sha256.Sum256(canonical)
	got := hex.EncodeToString(sum[:])
	if got != h.Hash {
		return v.fail(pos, h, Modified, fmt.Sprintf("its content hashes to %s, not to its stored hash %s: the record was changed after it was written", short(got), short(h.Hash)))
	}
	if h.PrevHash != v.res.Head {
		want := v.res.Head
		if want == Genesis {
			want = "empty (the chain's first record)"
		} else {
			want = short(want) + " (the hash of the record before it)"
		}
		return v.fail(pos, h, Relinked, fmt.Sprintf("its prevHash is %s, want %s: a record was deleted, inserted or moved before it", orEmpty(short(h.PrevHash)), want))
	}
	if h.Signature != "" {
		v.res.Signed++
	}
	if v.pub != nil {
		if h.Signature == "" {
			return v.fail(pos, h, Unsigned, fmt.Sprintf("the record has no signature, and every record must be signed by key %s", v.res.KeyFingerprint))
		}
		if !VerifySignature(v.pub, h.Hash, h.Signature) {
			return v.fail(pos, h, BadSignature, fmt.Sprintf("its signature does not verify with key %s: it was signed by another key, or forged", v.res.KeyFingerprint))
		}
	}
	v.chained = true
	v.res.Head = h.Hash
	return nil
}

func (v *Verifier) fail(pos int, h header, p Problem, detail string) *Break {
	v.res.Break = &Break{Position: pos, ID: orEmpty(h.ID), Scenario: orEmpty(h.Scenario), Problem: p, Detail: detail}
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
