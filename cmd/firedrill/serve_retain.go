package main

import (
	"time"

	"github.com/spf13/pflag"

	"github.com/firedrill-dev/firedrill/scenarios"
	"github.com/firedrill-dev/firedrill/service"
)

// registerRetainFlags adds serve's retention flags, which set cfg.Retain and cfg.ArchiveDir
// (the service checks them).
func registerRetainFlags(fl *pflag.FlagSet, cfg *service.Config) {
	fl.Var((*days)(&cfg.Retain), "retain", "prune the runs that finished longer ago than this (e.g. 400d) into --archive-dir, at start-up and daily, leaving a signed checkpoint (default: keep every run)")
	fl.StringVar(&cfg.ArchiveDir, "archive-dir", "", "where --retain writes the archives of pruned runs, one file per prune named by its time range (created 0700)")
}

// days is a duration flag that also takes whole days ("400d"), as scenarios do.
type days time.Duration

func (d *days) String() string {
	if *d == 0 {
		return ""
	}
	return scenarios.Duration{Duration: time.Duration(*d)}.String()
}

func (d *days) Set(s string) error {
	v, err := scenarios.ParseDuration(s)
	*d = days(v)
	return err
}

func (d *days) Type() string { return "duration" }
