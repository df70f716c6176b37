package main

import (
	"crypto/ed25519"
	"os"

	"github.com/spf13/cobra"

	"github.com/firedrill-dev/firedrill/drill/chain"
	"github.com/firedrill-dev/firedrill/drill/history"
)

func (a *app) historyVerifyCmd() *cobra.Command {
	var (
		historyFlag, publicKey string
		heads, archives        []string
	)
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the history's hash chain and signatures: exit 0 intact, 1 tampered",
		Long: `Walks every finished record in chain order, recomputes its hash and checks that the columns
which copy its fields for queries still agree with it (docs/history.md). It exits 0 when the
history is intact, and 1 naming the first record that was modified, deleted, inserted or
reordered, whose copied columns were edited, or whose signature does not verify. With
--public-key every record must carry a valid signature of that key. Reports state the same
verification. It changes no record (opening a history written by an older firedrill still
brings its schema up to date).

A pruned history starts with a checkpoint that stands for the records 'history prune' moved
into an archive. --archive FILE checks that the archive is exactly those records: an unbroken
chain that starts where the checkpoint's records start and ends at the hash it names. Give
the archives of several prunes in any order (a later archive starts with the earlier
checkpoint, which the earlier archive joins); any that does not join exits 1, naming it.`,
		Example: `  firedrill history verify
  firedrill history verify --public-key /etc/firedrill/keys/firedrill-signing.pub
  firedrill history verify --history postgres://auditor@db/firedrill -o json
  # the head last quarter's report showed must still be there
  firedrill history verify --contains 5f0c9d…
  # a pruned history and the archives of its prunes
  firedrill history verify --archive /srv/archive/firedrill-2024.jsonl --archive /srv/archive/firedrill-2025.jsonl`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var pub ed25519.PublicKey
			if publicKey != "" {
				var err error
				if pub, err = chain.LoadPublicKey(publicKey); err != nil {
					return usagef("", "%v", err)
				}
			}
			for _, f := range archives {
				if _, err := os.Stat(f); err != nil {
					return usagef("", "--archive: %v", err)
				}
			}
			store, err := a.openHistoryReadOnly(cmd, historyFlag)
			if err != nil {
				return err
			}
			defer store.Close()
			res, err := store.Verify(cmd.Context(), history.VerifyOptions{PublicKey: pub, Contains: heads})
			if err != nil {
				return err
			}
			out := verified{Verification: res}
			intact := res.Intact
			if len(archives) > 0 {
				if out.Archives, err = history.VerifyArchives(archives, res.Checkpoint, pub); err != nil {
					return err
				}
			}
			err = a.print(out, func(p printer) {
				p("%s\n", res.Message)
				for _, av := range out.Archives {
					p("%s\n", av.Message)
				}
			})
			if err != nil {
				return err
			}
			for _, av := range out.Archives {
				intact = intact && av.Intact
			}
			if !intact {
				return &codedError{code: exitFailed}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&historyFlag, "history", "", "history database (default: $FIREDRILL_HISTORY, else ~/.local/share/firedrill/history.db)")
	fl.StringVar(&publicKey, "public-key", "", "ed25519 public key (from 'firedrill keygen'): every record must carry its valid signature")
	fl.StringSliceVar(&heads, "contains", nil, "a chain head noted earlier (from a report or an earlier verify) that must still be in the chain; repeatable")
	fl.StringArrayVar(&archives, "archive", nil, "an archive 'history prune' wrote: it must be exactly the records a checkpoint stands for; repeatable")
	return cmd
}

// openHistoryReadOnly opens the history for commands that only read it: unlike openHistory it
// does not mark abandoned runs (which would finish records, and sign them).
func (a *app) openHistoryReadOnly(cmd *cobra.Command, flag string) (*history.Store, error) {
	loc, err := a.existingHistory(flag)
	if err != nil {
		return nil, err
	}
	return history.Open(cmd.Context(), loc.DSN)
}

// verified is what `history verify -o json` prints: the history's verification and, with
// --archive, each archive's.
type verified struct {
	history.Verification
	Archives []history.ArchiveVerification `json:"archives,omitempty"`
}
