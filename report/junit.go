package report

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
)

// junitKind is how JUnit shows a result: "" passed, or the element a testcase gets.
func junitKind(r drill.Result) string {
	switch r {
	case drill.Passed:
		return ""
	case drill.Failed:
		return "failure"
	case drill.Skipped, drill.Missed:
		return "skipped"
	}
	return "error" // error, aborted, anything unknown
}

type junitCase struct {
	XMLName   xml.Name     `xml:"testcase"`
	Name      string       `xml:"name,attr"`
	Classname string       `xml:"classname,attr"`
	Time      string       `xml:"time,attr"`
	Failure   *junitDetail `xml:"failure,omitempty"`
	Error     *junitDetail `xml:"error,omitempty"`
	Skipped   *junitDetail `xml:"skipped,omitempty"`
	SystemOut string       `xml:"system-out,omitempty"`
}

type junitDetail struct {
	Message string `xml:"message,attr,omitempty"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

func (c *junitCase) set(r drill.Result, message, typ, text string) {
	d := &junitDetail{Message: message, Type: typ, Text: text}
	switch junitKind(r) {
	case "failure":
		c.Failure = d
	case "error":
		c.Error = d
	case "skipped":
		c.Skipped = &junitDetail{Message: message}
	}
}

// JUnit writes JUnit XML: a testsuite per scenario, and in it per run a testcase for the run
// itself (its overall result, so that runs without checks show too) and one per check, so CI
// systems show drills like tests. It reads the history once per scenario.
func (r *Report) JUnit(ctx context.Context, w io.Writer) error {
	io.WriteString(w, xml.Header)
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	var tests, failures, errs, skipped int
	type totals struct{ tests, failures, errors, skipped int }
	per := map[string]totals{}
	for _, sc := range r.Summary.Scenarios {
		var t totals
		count := func(m map[string]int) {
			for res, n := range m {
				t.tests += n
				switch junitKind(drill.Result(res)) {
				case "failure":
					t.failures += n
				case "error":
					t.errors += n
				case "skipped":
					t.skipped += n
				}
			}
		}
		count(sc.Counts)
		count(sc.Checks)
		per[sc.Name] = t
		tests, failures, errs, skipped = tests+t.tests, failures+t.failures, errs+t.errors, skipped+t.skipped
	}
	attr := func(name string, v any) xml.Attr { return xml.Attr{Name: xml.Name{Local: name}, Value: fmt.Sprint(v)} }
	root := xml.StartElement{Name: xml.Name{Local: "testsuites"}, Attr: []xml.Attr{
		attr("name", "firedrill drills: "+r.Summary.Scope), attr("tests", tests), attr("failures", failures),
		attr("errors", errs), attr("skipped", skipped), attr("timestamp", r.Summary.GeneratedAt.Format(time.RFC3339)),
	}}
	if err := enc.EncodeToken(root); err != nil {
		return err
	}
	names := make([]string, 0, len(r.Summary.Scenarios))
	for _, sc := range r.Summary.Scenarios {
		if sc.Runs > 0 {
			names = append(names, sc.Name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		t := per[name]
		suite := xml.StartElement{Name: xml.Name{Local: "testsuite"}, Attr: []xml.Attr{
			attr("name", name), attr("tests", t.tests), attr("failures", t.failures), attr("errors", t.errors), attr("skipped", t.skipped),
		}}
		if err := enc.EncodeToken(suite); err != nil {
			return err
		}
		err := r.eachInScope(ctx, func(rec *drill.Record) error {
			if rec.Scenario != name {
				return nil
			}
			dur := 0.0
			if rec.FinishedAt != nil {
				dur = rec.FinishedAt.Sub(rec.StartedAt).Seconds()
			}
			class := name + "." + rec.ID
			run := junitCase{Name: "drill run " + rec.ID, Classname: class, Time: strconv.FormatFloat(dur, 'f', 3, 64),
				SystemOut: fmt.Sprintf("started %s, trigger %s, operator %s, RTO %s, RPO %s, hash %s",
					rec.StartedAt.UTC().Format(time.RFC3339), rec.Trigger, rec.Operator, Seconds(rec.RTOSeconds), Seconds(rec.RPOSeconds), rec.Hash)}
			run.set(rec.Result, reason(rec), string(rec.Result), rec.Message)
			if err := enc.Encode(run); err != nil {
				return err
			}
			for _, c := range rec.Checks {
				tc := junitCase{Name: c.Name, Classname: class, Time: strconv.FormatFloat(c.Seconds, 'f', 3, 64)}
				tc.set(c.Result, oneLine(c.Message), c.Type, c.Message)
				if len(c.Evidence) > 0 {
					tc.SystemOut = evidenceText(c.Evidence)
				}
				if err := enc.Encode(tc); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := enc.EncodeToken(suite.End()); err != nil {
			return err
		}
	}
	if err := enc.EncodeToken(root.End()); err != nil {
		return err
	}
	if err := enc.Flush(); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// evidenceText renders a check's evidence as sorted key: value lines.
func evidenceText(ev map[string]any) string {
	keys := make([]string, 0, len(ev))
	for k := range ev {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s: %s\n", k, evidenceValue(ev[k]))
	}
	return b.String()
}
