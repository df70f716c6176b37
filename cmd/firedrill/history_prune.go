package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/firedrill-dev/firedrill/drill/history"
)

func (a *app) historyPruneCmd() *cobra.Command {
	var historyFlag, before, archive string
	cmd := &cobra.Command{
		Use:   "prune --before DATE --archive FILE",
		Short: "Move the runs that finished before DATE into an archive, leaving a signed checkpoint in the chain",
		Long: `Removes the runs at the start of the hash chain that finished before DATE and writes them, as
stored and in chain order, one JSON record per line, to the archive FILE (0600; it must not
exist). In their place the history keeps a checkpoint record, signed with --signing-key like every
record, that names the last removed record's hash: 'history verify' verifies the history from
the checkpoint on, and 'history verify --archive FILE' checks that the archive is exactly the
records the checkpoint stands for.

It first verifies the whole history and refuses one that is not intact (exit 1). It never
removes a running run nor the newest record, writes and fsyncs the archive before it removes
anything, and removes the records and writes the checkpoint in one transaction, so runs that
finish meanwhile join the chain after it. A checkpoint of an earlier prune goes into the new
archive along with the runs. See docs/history.md.`,
		Example: `  firedrill history prune --before 2025-01-01 --archive /srv/archive/firedrill-2024.jsonl \
    --signing-key /etc/firedrill/keys/firedrill-signing.key
  firedrill history verify --archive /srv/archive/firedrill-2024.jsonl`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if before == "" || archive == "" {
				return usagef("Run 'firedrill history prune --help' for usage.", "history prune needs --before DATE and --archive FILE")
			}
			t, err := parseWhen(before, false)
			if err != nil {
				return usagef("", "--before: %v", err)
			}
			if t.After(time.Now()) {
				return usagef("", "--before %s is in the future: prune removes only runs that finished before it", t.Format(time.RFC3339))
			}
			if _, err := os.Lstat(archive); err == nil {
				return usagef("", "--archive %s exists: firedrill never overwrites an archive; choose another file", archive)
			}
			loc, err := a.existingHistory(historyFlag)
			if err != nil {
				return err
			}
			store, err := a.openStore(cmd.Context(), loc, "")
			if err != nil {
				return err
			}
			defer store.Close()
			res, err := store.Prune(cmd.Context(), history.PruneOptions{Before: t, Dir: filepath.Dir(archive),
				Name: func(_, _ time.Time) string { return filepath.Base(archive) }, Trigger: "manual", Operator: operator()})
			switch {
			case errors.Is(err, history.ErrNotIntact):
				return &codedError{code: exitFailed, err: err}
			case errors.Is(err, history.ErrSigningKey):
				return usagef("", "%v", err)
			case err != nil:
				return err
			}
			return a.print(res, func(p printer) {
				c := res.Checkpoint
				if c == nil {
					p("nothing to prune: no run finished before %s, other than the newest record (which stays); %s not written\n", t.Format(time.RFC3339), archive)
					return
				}
				p("%s\n", c.Message)
				p("archive: %s (%d records)\n", res.Archive, c.Pruned.Records)
				p("checkpoint %s stands for %d runs up to %s\n", c.ID, c.Pruned.Runs, c.LastHash)
				p("verify with: firedrill history verify --archive %s\n", res.Archive)
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&historyFlag, "history", "", "history database (default: $FIREDRILL_HISTORY, else ~/.local/share/firedrill/history.db)")
	fl.StringVar(&before, "before", "", "remove the runs that finished before this date (2025-01-01, UTC) or RFC 3339 time; not in the future")
	fl.StringVar(&archive, "archive", "", "file to write the removed records to, one JSON record per line; must not exist")
	return cmd
}

// existingHistory resolves --history for commands that need a history already there: Open
// creates a missing SQLite file, and a reader would then report on an empty history.
func (a *app) existingHistory(flag string) (history.Location, error) {
	loc, err := a.historyLocation(flag)
	if err != nil {
		return loc, err
	}
	if !loc.Postgres {
		if _, err := os.Stat(loc.Path); errors.Is(err, os.ErrNotExist) {
			return loc, fmt.Errorf("no history at %s: nothing was recorded there; point --history or FIREDRILL_HISTORY at the history", loc.Path)
		}
	}
	return loc, nil
}
