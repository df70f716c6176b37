package history

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaultLocation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"FIREDRILL_HISTORY": "postgres://db/fd", "XDG_DATA_HOME": "/x", "HOME": "/h"}, "postgres://db/fd"},
		{map[string]string{"FIREDRILL_HISTORY": "/srv/h.db", "HOME": "/h"}, "/srv/h.db"},
		{map[string]string{"XDG_DATA_HOME": "/x", "HOME": "/h"}, "/x/firedrill/history.db"},
		{map[string]string{"XDG_DATA_HOME": "relative", "HOME": "/h"}, "/h/.local/share/firedrill/history.db"},
		{map[string]string{"HOME": "/h"}, "/h/.local/share/firedrill/history.db"},
		{map[string]string{}, ""},
	} {
		if got := DefaultLocation(func(k string) string { return tc.env[k] }); got != tc.want {
			t.Errorf("DefaultLocation(%v) = %q, want %q", tc.env, got, tc.want)
		}
	}
}

func TestLocate(t *testing.T) {
	t.Parallel()
	env := map[string]string{"FIREDRILL_HISTORY": "postgres://fd:s3cret@db/fd?sslmode=disable", "HOME": "/h"}
	getenv := func(k string) string { return env[k] }
	if l, err := Locate("/srv/h.db", getenv); err != nil || l.Postgres || l.Path != "/srv/h.db" || l.DSN != "/srv/h.db" {
		t.Errorf("the flag wins: %+v, %v", l, err)
	}
	l, err := Locate("", getenv)
	if err != nil || !l.Postgres || l.Path != "" || l.DSN != env["FIREDRILL_HISTORY"] {
		t.Errorf("from FIREDRILL_HISTORY: %+v, %v", l, err)
	}
	if s := l.String(); strings.Contains(s, "s3cret") || !strings.Contains(s, "db/fd") {
		t.Errorf("String() = %q: want the URL without its password", s)
	}
	if _, err := Locate("", func(string) string { return "" }); !errors.Is(err, ErrNoLocation) {
		t.Errorf("nothing set: %v, want ErrNoLocation", err)
	}
	if _, err := Locate("mysql://db/fd", getenv); err == nil || !strings.Contains(err.Error(), `unknown scheme "mysql"`) {
		t.Errorf("unknown scheme: %v", err)
	}
}

func TestParseLocation(t *testing.T) {
	t.Parallel()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for dsn, want := range map[string]Location{
		"/var/lib/h.db":                   {Path: "/var/lib/h.db"},
		"rel/h.db":                        {Path: filepath.Join(wd, "rel/h.db")},
		"sqlite:///data/h.db":             {Path: "/data/h.db"},
		"SQLite3:///data/h.db":            {Path: "/data/h.db"},
		"file:///data/h.db":               {Path: "/data/h.db"},
		"./odd://dir/h.db":                {Path: filepath.Join(wd, "odd:/dir/h.db")},
		"postgres://u:p@db:5432/fd":       {Postgres: true},
		"postgresql://db/fd?sslmode=none": {Postgres: true},
		"POSTGRES://db/fd":                {Postgres: true},
	} {
		want.DSN = dsn
		if got, err := ParseLocation(dsn); err != nil || got != want {
			t.Errorf("ParseLocation(%q) = %+v, %v; want %+v", dsn, got, err, want)
		}
	}
	for dsn, msg := range map[string]string{
		"":                       "no history location",
		"sqlite://":              "names no file",
		"postgres://u:s3cret@db": "names no database",
		"mysql://u:s3cret@db/x":  `unknown scheme "mysql"`,
	} {
		_, err := ParseLocation(dsn)
		if err == nil || !strings.Contains(err.Error(), msg) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("ParseLocation(%q): %v, want %q and no password", dsn, err, msg)
		}
	}
}

func TestDefaultSpoolDir(t *testing.T) {
	t.Parallel()
	env := map[string]string{"HOME": "/home/u", "XDG_STATE_HOME": ""}
	getenv := func(k string) string { return env[k] }
	for dsn, want := range map[string]string{
		"/var/lib/firedrill/history.db":             "/var/lib/firedrill/spool",
		"sqlite:///data/h.db":                       "/data/spool",
		"postgres://u:p@db:5432/firedrill":          "/home/u/.local/state/firedrill/spool",
		"postgresql://db/firedrill?sslmode=disable": "/home/u/.local/state/firedrill/spool",
	} {
		l, err := ParseLocation(dsn)
		if err != nil {
			t.Fatal(err)
		}
		if got := DefaultSpoolDir(l, getenv); got != want {
			t.Errorf("DefaultSpoolDir(%q) = %q, want %q", dsn, got, want)
		}
	}
	env["XDG_STATE_HOME"] = "/state"
	if got := DefaultSpoolDir(Location{DSN: "postgres://db/x", Postgres: true}, getenv); got != "/state/firedrill/spool" {
		t.Errorf("with XDG_STATE_HOME: %q", got)
	}
}
