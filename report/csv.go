package report

import (
	"context"
	"encoding/csv"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
)

// CSVHeader names the CSV report's columns, one row per run.
var CSVHeader = []string{
	"id", "scenario", "controls", "result", "trigger", "operator", "started_at", "finished_at", "duration_seconds",
	"rto_seconds", "rto_target_seconds", "rto_met", "rpo_seconds", "rpo_target_seconds", "rpo_met",
	"checks_passed", "checks_failed", "backup_kind", "backup_name", "backup_sha256", "message", "hash",
}

// CSV writes one row per run in scope, for spreadsheets. Times are RFC 3339 UTC; empty cells
// are values that were not measured.
func (r *Report) CSV(ctx context.Context, w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	row := make([]string, len(CSVHeader))
	err := r.eachInScope(ctx, func(rec *drill.Record) error {
		passed, failed := 0, 0
		for _, c := range rec.Checks {
			switch c.Result {
			case drill.Passed:
				passed++
			case drill.Failed, drill.Error:
				failed++
			}
		}
		rtoT, rtoMet := objectiveCells(rec, "rto")
		rpoT, rpoMet := objectiveCells(rec, "rpo")
		finished, dur := "", ""
		if rec.FinishedAt != nil {
			finished = rec.FinishedAt.UTC().Format(time.RFC3339Nano)
			dur = num(rec.FinishedAt.Sub(rec.StartedAt).Seconds())
		}
		row = append(row[:0], rec.ID, rec.Scenario, strings.Join(ControlsOf(rec.Annotations, rec.Labels), ","),
			string(rec.Result), rec.Trigger, rec.Operator, rec.StartedAt.UTC().Format(time.RFC3339Nano), finished, dur,
			numPtr(rec.RTOSeconds), rtoT, rtoMet, numPtr(rec.RPOSeconds), rpoT, rpoMet,
			strconv.Itoa(passed), strconv.Itoa(failed), rec.Backup.Kind, rec.Backup.Name, rec.Backup.SHA256,
			csvSafe(oneLine(rec.Message)), rec.Hash)
		return cw.Write(row)
	})
	if err != nil {
		return err
	}
	cw.Flush()
	return cw.Error()
}

func objectiveCells(r *drill.Record, name string) (target, met string) {
	for _, o := range r.Objectives {
		if o.Name == name {
			if o.ActualSeconds == nil {
				return num(o.TargetSeconds), ""
			}
			return num(o.TargetSeconds), strconv.FormatBool(o.Met)
		}
	}
	return "", ""
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func numPtr(f *float64) string {
	if f == nil {
		return ""
	}
	return num(*f)
}

// csvSafe keeps a spreadsheet from taking a cell for a formula (CSV injection): a message
// comes from the outside world (an error text, a check's output).
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
