package history

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/firedrill-dev/firedrill/drill/chain"
)

// ArchiveVerification is what VerifyArchives found of one archive.
type ArchiveVerification struct {
	File string `json:"file"`
	// Intact: the archive is an unbroken segment of the chain, every signature required
	// verifies, and it joins a checkpoint exactly (Joins).
	Intact bool `json:"intact"`
	chain.Result
	// Joins is the id of the checkpoint that stands for the archive's records.
	Joins   string `json:"joins,omitempty"`
	Problem string `json:"problem,omitempty"`
	Message string `json:"message"` // the verdict in one line
}

// VerifyArchives checks the archives Prune wrote against the checkpoints that stand for their
// records. Each must be an unbroken segment of the chain (with pub, every record signed by
// it) whose last record's hash is a checkpoint's lastHash and whose first record links to
// where that checkpoint's records start (its prevHash: the genesis). The checkpoints are
// the one the history starts with (from, as Verify reports it; nil when it has none) and those
// archives start with — the archive of a second prune begins with the first prune's
// checkpoint, which the first archive joins — so archives may come in any order. An error
// means a file could not be read.
func VerifyArchives(paths []string, from *chain.CheckpointRef, pub ed25519.PublicKey) ([]ArchiveVerification, error) {
	if len(pub) == 0 {
		pub = nil
	}
	out := make([]ArchiveVerification, len(paths))
	type known struct {
		ref   *chain.CheckpointRef
		where string // where it was found, for messages
	}
	var cps []known
	if from != nil {
		cps = append(cps, known{from, "which the history starts with"})
	}
	for i, path := range paths {
		res, err := verifyArchiveFile(path, pub)
		if err != nil {
			return nil, fmt.Errorf("archive %s: %w", path, err)
		}
		out[i] = ArchiveVerification{File: path, Result: res}
		if res.OK() && res.Checkpoint != nil {
			cps = append(cps, known{res.Checkpoint, "first in archive " + path})
		}
	}
	for i := range out {
		a := &out[i]
		if b := a.Break; b != nil {
			a.Problem = fmt.Sprintf("line %d (%s): %s: %s", b.Position, b.Record(), b.Problem, b.Detail)
			a.Message = fmt.Sprintf("archive %s: TAMPERED: %s", a.File, a.Problem)
			continue
		}
		var joins *known
		for j := range cps {
			if cps[j].ref.LastHash == a.ChainHead {
				joins = &cps[j]
			}
		}
		switch {
		case a.Records == 0:
			a.Problem = "it holds no records"
		case joins == nil:
			var names []string
			for _, c := range cps {
				names = append(names, fmt.Sprintf("checkpoint %s (%s) stands for records up to %s", c.ref.ID, c.where, c.ref.LastHash))
			}
			if len(names) == 0 {
				names = append(names, "the history starts with no checkpoint (it was not pruned, or its checkpoint was removed)")
			}
			a.Problem = fmt.Sprintf("its last record's hash %s is no checkpoint's last hash: records were removed from its end or added after it, or it is another history's archive; %s",
				a.ChainHead, strings.Join(names, "; "))
		case a.After != joins.ref.PrevHash:
			a.Problem = fmt.Sprintf("its first record links to %s, but the records of checkpoint %s (%s) start after %s: records were removed from its start",
				describeHash(a.After), joins.ref.ID, joins.where, describeHash(joins.ref.PrevHash))
		default:
			a.Intact, a.Joins = true, joins.ref.ID
			sig := fmt.Sprintf("signatures not checked (%d of %d signed)", a.Signed, a.Records-a.Unprotected)
			if a.SignaturesChecked {
				sig = fmt.Sprintf("signatures ok (key %s)", a.KeyFingerprint)
			}
			a.Message = fmt.Sprintf("archive %s: intact: %d records from %s up to %s, the records checkpoint %s stands for; %s",
				a.File, a.Records, describeHash(a.After), a.ChainHead, joins.ref.ID, sig)
			continue
		}
		a.Message = fmt.Sprintf("archive %s: does not join the chain: %s", a.File, a.Problem)
	}
	return out, nil
}

// verifyArchiveFile checks that the records of path, one per line, form a segment of a chain.
func verifyArchiveFile(path string, pub ed25519.PublicKey) (chain.Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return chain.Result{}, err
	}
	defer f.Close()
	v := chain.NewVerifier(pub)
	v.Segment()
	r := bufio.NewReaderSize(f, 1<<20)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 && !(err == io.EOF && len(bytes.TrimSpace(line)) == 0) {
			if v.Add(bytes.TrimSuffix(line, []byte("\n"))) != nil {
				break
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return chain.Result{}, err
		}
	}
	return v.Result(), nil
}

func describeHash(h string) string {
	if h == chain.Genesis {
		return "the genesis"
	}
	return h
}
