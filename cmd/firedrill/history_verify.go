package main

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/firedrill-dev/firedrill/drill/chain"
	"github.com/firedrill-dev/firedrill/drill/history"
)

// verifyResult is `history verify -o json`.
type verifyResult struct {
	Intact            bool   `json:"intact"`
	Records           int    `json:"records"`
	Unprotected       int    `json:"unprotected,omitempty"`
	ChainHead         string `json:"chainHead"`
	Signed            int    `json:"signed"`
	SignaturesChecked bool   `json:"signaturesChecked"`
	KeyFingerprint    string `json:"keyFingerprint,omitempty"`
	// Broken names the first record that breaks the chain, when one does.
	Broken  *chain.Break `json:"broken,omitempty"`
	Message string       `json:"message"`
}

func (a *app) historyVerifyCmd() *cobra.Command {
	var (
		historyFlag, publicKey string
		heads                  []string
	)
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the history's hash chain and signatures: exit 0 intact, 1 tampered",
		Long: `Walks every finished record in chain order and recomputes its hash (docs/history.md). It
exits 0 when the chain is intact, and 1 naming the first record that was modified, deleted,
inserted or reordered, or whose signature does not verify. With --public-key every record must
carry a valid signature of that key. It changes no record (opening a history written by an
older firedrill still brings its schema up to date).`,
		Example: `  firedrill history verify
  firedrill history verify --public-key /etc/firedrill/keys/firedrill-signing.pub
  firedrill history verify --history postgres://auditor@db/firedrill -o json
  # the head last quarter's report showed must still be there
  firedrill history verify --contains 5f0c9d…`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var pub ed25519.PublicKey
			if publicKey != "" {
				var err error
				if pub, err = chain.LoadPublicKey(publicKey); err != nil {
					return usagef("", "%v", err)
				}
			}
			store, err := a.openHistoryReadOnly(cmd, historyFlag)
			if err != nil {
				return err
			}
			defer store.Close()
			v := chain.NewVerifier(pub)
			missing := map[string]bool{}
			for _, h := range heads {
				missing[strings.ToLower(h)] = true
			}
			var copies *chain.Break // the first row whose query columns disagree with its record
			err = store.WalkRows(cmd.Context(), func(row history.Row) error {
				if v.Add(row.Record) != nil {
					return errStopWalk
				}
				delete(missing, v.Result().Head)
				if copies == nil {
					copies = checkCopies(row, v.Result().Records)
				}
				return nil
			})
			if err != nil && err != errStopWalk {
				return err
			}
			res := v.Result()
			if copies != nil && (res.OK() || copies.Position < res.Break.Position) {
				res.Break = copies // the first broken record is what counts
			}
			if res.OK() && len(missing) > 0 {
				// A head noted earlier is gone: the chain was cut back, or replaced wholesale.
				res.Break = &chain.Break{Position: res.Records, ID: "-", Scenario: "-", Problem: chain.Relinked,
					Detail: fmt.Sprintf("the chain no longer holds %s, a head given with --contains: records were removed from its end, or the history was replaced", strings.Join(sortedKeys(missing), ", "))}
			}
			out := verifyResult{
				Intact: res.OK(), Records: res.Records, Unprotected: res.Unprotected, ChainHead: res.Head, Signed: res.Signed,
				SignaturesChecked: res.SignaturesChecked, KeyFingerprint: res.KeyFingerprint, Broken: res.Break, Message: res.String(),
			}
			if err := a.print(out, func(p printer) { p("%s\n", res) }); err != nil {
				return err
			}
			if !res.OK() {
				return &codedError{code: exitFailed}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&historyFlag, "history", "", "history database (default: $FIREDRILL_HISTORY, else ~/.local/share/firedrill/history.db)")
	fl.StringVar(&publicKey, "public-key", "", "ed25519 public key (from 'firedrill keygen'): every record must carry its valid signature")
	fl.StringSliceVar(&heads, "contains", nil, "a chain head noted earlier (from a report or an earlier verify) that must still be in the chain; repeatable")
	return cmd
}

// errStopWalk ends a walk early without being an error.
var errStopWalk = stopWalk{}

type stopWalk struct{}

func (stopWalk) Error() string { return "stop" }

// openHistoryReadOnly opens the history for commands that only read it: unlike openHistory it
// does not mark abandoned runs (which would finish records, and sign them).
func (a *app) openHistoryReadOnly(cmd *cobra.Command, flag string) (*history.Store, error) {
	dsn := flag
	if dsn == "" {
		dsn = history.DefaultPath(a.getenv)
	}
	if dsn == "" {
		return nil, usagef("", "no history location: set --history, FIREDRILL_HISTORY or HOME")
	}
	// Open creates a missing SQLite file; a reader would then report on an empty history.
	if path, ok := sqlitePath(dsn); ok {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no history at %s: nothing was recorded there; point --history or FIREDRILL_HISTORY at the history", path)
		}
	}
	return history.Open(cmd.Context(), dsn)
}

// sqlitePath returns the file a history location names, if it names a file.
func sqlitePath(dsn string) (string, bool) {
	scheme, rest, isURL := strings.Cut(dsn, "://")
	if !isURL || strings.ContainsAny(scheme, `/\.`) {
		return dsn, true
	}
	switch strings.ToLower(scheme) {
	case "sqlite", "sqlite3", "file":
		return rest, true
	}
	return "", false
}

// checkCopies compares the columns queries use (history --result, --scenario) with the record
// they copy, which the chain vouches for; nil when they agree.
func checkCopies(row history.Row, pos int) *chain.Break {
	var r struct {
		ID, Scenario, Result, PrevHash, Hash string
	}
	if err := json.Unmarshal(row.Record, &r); err != nil {
		return nil // the chain check reports a malformed record
	}
	var diffs []string
	for _, c := range []struct{ name, column, record string }{
		{"id", row.ID, r.ID}, {"scenario", row.Scenario, r.Scenario}, {"result", row.Result, r.Result},
		{"prev_hash", row.PrevHash, r.PrevHash}, {"hash", row.Hash, r.Hash},
	} {
		if c.column != c.record {
			diffs = append(diffs, fmt.Sprintf("column %s is %q, the record says %q", c.name, c.column, c.record))
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	return &chain.Break{Position: pos, ID: r.ID, Scenario: r.Scenario, Problem: chain.Modified,
		Detail: strings.Join(diffs, "; ") + ": the runs table was edited around the record, which misleads queries such as 'firedrill history --result' (the record itself is intact)"}
}
