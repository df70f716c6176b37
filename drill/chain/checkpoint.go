package chain

import (
	"encoding/json"
	"fmt"
	"time"
)

// KindCheckpoint is the "kind" member of a checkpoint record. A record without "kind" is a
// run's; records of other kinds (from a newer firedrill) chain like runs.
const KindCheckpoint = "checkpoint"

// Checkpoint is the record a prune leaves in the history in place of the records it removed
// into an archive. It is hashed, linked and signed like any record (its prevHash is where the
// removed records started: the genesis), and it stands for them: the record after it links
// to LastHash, the hash of the last record removed — records already written never change.
// It can only be the first record of a chain. docs/history.md describes it.
type Checkpoint struct {
	Kind string `json:"kind"` // KindCheckpoint
	ID   string `json:"id"`
	// Trigger (manual, schedule) and Operator say who pruned, as a run's record does.
	Trigger  string `json:"trigger"`
	Operator string `json:"operator"`
	Message  string `json:"message"` // what was pruned, in one line
	// StartedAt is when the prune began reading the history, FinishedAt when it wrote this.
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt"`
	Pruned     Pruned    `json:"pruned"`
	// LastHash is the hash of the last record the checkpoint stands for: the next record's
	// prevHash.
	LastHash  string `json:"lastHash"`
	PrevHash  string `json:"prevHash"`
	Hash      string `json:"hash"`
	Signature string `json:"signature,omitempty"`
}

// Pruned says what a checkpoint stands for and where it went.
type Pruned struct {
	// Before: the prune removed the runs at the start of the chain that finished before it.
	Before time.Time `json:"before"`
	// Runs counts the run records the checkpoint stands for, those of earlier prunes included.
	Runs int `json:"runs"`
	// Unprotected counts those of Runs that predate the hash chain (no hash).
	Unprotected int `json:"unprotected,omitempty"`
	// Archive is the file name of the archive that holds the removed records; Records counts
	// its lines: the runs this prune removed and, first, the checkpoint of the prune before.
	Archive string `json:"archive"`
	Records int    `json:"records"`
	// FirstSeq and LastSeq are the chain positions (the history's seq) of the records removed.
	FirstSeq int64 `json:"firstSeq"`
	LastSeq  int64 `json:"lastSeq"`
	// FirstRun and LastRun are the ids of the first and last run this prune removed, From
	// and To when they finished.
	FirstRun string    `json:"firstRun"`
	LastRun  string    `json:"lastRun"`
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
}

// CheckpointRef is what a verification reports of the checkpoint a chain starts with.
type CheckpointRef struct {
	ID       string `json:"id"`
	Hash     string `json:"hash"`
	PrevHash string `json:"prevHash"`
	LastHash string `json:"lastHash"`
	Runs     int    `json:"runs"` // pruned run records it stands for
}

// SealCheckpoint links c to the chain as Seal does a run's record: c.PrevHash is prev, c.Hash
// the hash of its JSON (encoding/json, as stored), and c.Signature, when signer is set, the
// signature of that hash. Times must be in UTC.
func SealCheckpoint(c *Checkpoint, prev string, signer *Signer) error {
	c.Kind, c.PrevHash, c.Hash, c.Signature = KindCheckpoint, prev, "", ""
	raw, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("hash checkpoint %s: %w", c.ID, err)
	}
	if c.Hash, err = HashJSON(raw); err != nil {
		return fmt.Errorf("hash checkpoint %s: %w", c.ID, err)
	}
	c.Signature, err = sign(signer, c.Hash, "checkpoint "+c.ID)
	return err
}

// sign returns signer's signature of hash, or "" without a signer.
func sign(signer *Signer, hash, what string) (string, error) {
	if signer == nil {
		return "", nil
	}
	sig, err := signer.Sign(hash)
	if err != nil {
		return "", fmt.Errorf("sign %s: %w", what, err)
	}
	return sig, nil
}

// checkpointRef reads what the verifier needs of a checkpoint record; Fields located its
// members. The error says what makes it no checkpoint.
func checkpointRef(f *Fields, h header) (*CheckpointRef, error) {
	if !isHash(h.LastHash) {
		return nil, fmt.Errorf("the checkpoint's lastHash %q is not a SHA-256 in hex", h.LastHash)
	}
	var p struct {
		Runs *int `json:"runs"`
	}
	if err := json.Unmarshal(f.Raw("pruned"), &p); err != nil || p.Runs == nil || *p.Runs < 0 {
		return nil, fmt.Errorf("the checkpoint's pruned.runs is missing or not a count (%.60s)", f.Raw("pruned"))
	}
	return &CheckpointRef{ID: string(h.ID), Hash: string(h.Hash), PrevHash: string(h.PrevHash), LastHash: string(h.LastHash), Runs: *p.Runs}, nil
}

// isHash reports whether h is a lowercase hex SHA-256, as hashes are written.
func isHash(h []byte) bool {
	if len(h) != 64 {
		return false
	}
	for _, c := range h {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
