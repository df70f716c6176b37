package history

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// Location is where a history lives: a SQLite file or a PostgreSQL database. ParseLocation is
// the one place that tells them apart.
type Location struct {
	// DSN is the location as given, what Open takes; a PostgreSQL URL may carry a password.
	DSN string
	// Path is the SQLite file, absolute; "" for PostgreSQL.
	Path string
	// Postgres: DSN is a postgres:// or postgresql:// URL.
	Postgres bool
}

// ErrNoLocation: no --history, no $FIREDRILL_HISTORY and no home directory to put the default
// file in.
var ErrNoLocation = errors.New("no history location: set --history, FIREDRILL_HISTORY or HOME")

// Locate resolves a --history flag: the flag when set, else DefaultLocation. It fails with
// ErrNoLocation when there is none, or with ParseLocation's error.
func Locate(flag string, getenv func(string) string) (Location, error) {
	return ParseLocation(cmp.Or(flag, DefaultLocation(getenv)))
}

// DefaultLocation is where the history lives unless --history says otherwise:
// $FIREDRILL_HISTORY (a path or URL), else $XDG_DATA_HOME/firedrill/history.db, else
// ~/.local/share/firedrill/history.db. It returns "" when none of them is set.
func DefaultLocation(getenv func(string) string) string {
	if v := getenv("FIREDRILL_HISTORY"); v != "" {
		return v
	}
	// The XDG spec says to ignore a relative XDG_DATA_HOME.
	if v := getenv("XDG_DATA_HOME"); v != "" && filepath.IsAbs(v) {
		return filepath.Join(v, "firedrill", "history.db")
	}
	if home := getenv("HOME"); home != "" {
		return filepath.Join(home, ".local", "share", "firedrill", "history.db")
	}
	return ""
}

// ParseLocation returns where dsn points, or why it can't hold a history: dsn is a file path,
// sqlite:///abs/path (also sqlite3:// and file://), or a postgres:// or postgresql:// URL that
// names a database. A path with "://" in a directory name is still a path. "" is ErrNoLocation.
func ParseLocation(dsn string) (Location, error) {
	if dsn == "" {
		return Location{}, ErrNoLocation
	}
	file := func(p string) (Location, error) {
		abs, err := filepath.Abs(p)
		if err != nil {
			return Location{}, fmt.Errorf("history %s: %w", p, err)
		}
		return Location{DSN: dsn, Path: abs}, nil
	}
	scheme, rest, isURL := strings.Cut(dsn, "://")
	if !isURL || strings.ContainsAny(scheme, `/\.`) {
		return file(dsn)
	}
	switch strings.ToLower(scheme) {
	case "sqlite", "sqlite3", "file":
		if rest == "" || rest == "/" {
			return Location{}, fmt.Errorf("history %q names no file: want sqlite:///abs/path", dsn)
		}
		return file(rest)
	case "postgres", "postgresql":
		u, err := url.Parse(dsn)
		if err != nil {
			return Location{}, fmt.Errorf("history %s: not a valid URL; want postgres://USER:PASSWORD@HOST:PORT/DATABASE", redactURL(dsn))
		}
		if strings.TrimPrefix(u.Path, "/") == "" {
			return Location{}, fmt.Errorf("history %s names no database: want postgres://USER:PASSWORD@HOST:PORT/DATABASE", redactURL(dsn))
		}
		return Location{DSN: dsn, Postgres: true}, nil
	}
	return Location{}, fmt.Errorf("history %s: unknown scheme %q: want a file path, sqlite:///abs/path or postgres://HOST/DATABASE", redactURL(dsn), scheme)
}

// String is the location fit for messages and command lines: the file, or the URL without
// its password.
func (l Location) String() string {
	if l.Postgres {
		return redactURL(l.DSN)
	}
	return l.Path
}

// DefaultSpoolDir is where a Spool in front of the history at l keeps its records unless told
// otherwise: "spool" next to a history file, else the XDG state directory (a PostgreSQL history
// has no local directory of its own).
func DefaultSpoolDir(l Location, getenv func(string) string) string {
	if !l.Postgres && l.Path != "" {
		return filepath.Join(filepath.Dir(l.Path), "spool")
	}
	if v := getenv("XDG_STATE_HOME"); v != "" && filepath.IsAbs(v) {
		return filepath.Join(v, "firedrill", "spool")
	}
	if home := getenv("HOME"); home != "" {
		return filepath.Join(home, ".local", "state", "firedrill", "spool")
	}
	return filepath.Join(os.TempDir(), "firedrill-spool")
}

// redactURL drops a password from a URL before it goes into an error message, also one
// given as a password= query parameter, which pgx accepts too.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}
