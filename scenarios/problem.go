package scenarios

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// Problem is one thing wrong with a scenario file. Loading and validation return every problem
// they find, joined with errors.Join (one "file:line: message" a line); Problems takes them back
// out.
type Problem struct {
	// File is the scenario file as it was named to Load, empty for a scenario built in code.
	File string `json:"file,omitempty"`
	// Line in File, 1-based; 0 when no line applies (a missing file) or none is known.
	Line int `json:"line,omitempty"`
	// Field is the field path the problem is about (spec.checks[2].etcdKeys.min), if any.
	Field string `json:"field,omitempty"`
	// Message is the complete sentence, field path included: what is wrong and what to do.
	Message string `json:"message"`
}

// Error is "file:line: message", the form editors and CI annotations understand.
func (p *Problem) Error() string {
	switch {
	case p.File != "" && p.Line > 0:
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Message)
	case p.File != "":
		return p.File + ": " + p.Message
	case p.Line > 0:
		return fmt.Sprintf("line %d: %s", p.Line, p.Message)
	}
	return p.Message
}

// Problems returns the problems err holds, in the order they were found: every *Problem of a
// joined error (errors.Join), and any other error as a Problem without a file. Nil for a nil
// error.
func Problems(err error) []*Problem {
	if err == nil {
		return nil
	}
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		var out []*Problem
		for _, e := range joined.Unwrap() {
			out = append(out, Problems(e)...)
		}
		return out
	}
	var p *Problem
	if errors.As(err, &p) {
		return []*Problem{p}
	}
	return []*Problem{{Message: err.Error()}}
}

// problems collects what is wrong with one file. lines maps field paths to the line where the
// field was written, so that problems found after decoding can still point into the file.
type problems struct {
	file  string
	lines map[string]int
	list  []*Problem
}

// add records a problem about field, found by validation: its line is the field's, or that of
// the nearest enclosing field that was written (a missing field is reported where its parent is).
func (p *problems) add(field, format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	if field != "" {
		msg = field + ": " + msg
	}
	p.list = append(p.list, &Problem{File: p.file, Line: lineOf(p.lines, field), Field: field, Message: msg})
}

// at records a problem at a known line, with a message that is already complete.
func (p *problems) at(line int, field, format string, a ...any) {
	p.list = append(p.list, &Problem{File: p.file, Line: line, Field: field, Message: fmt.Sprintf(format, a...)})
}

// merge takes over the problems of err (from another file or step) as they are.
func (p *problems) merge(err error) {
	p.list = append(p.list, Problems(err)...)
}

// err is nil when nothing was found, else all problems, one per line when printed: a plain list
// keeps the file:line prefix editors and CI look for at the start of each line.
func (p *problems) err() error {
	errs := make([]error, len(p.list))
	for i, pr := range p.list {
		errs[i] = pr
	}
	return errors.Join(errs...)
}

// lineOf finds the line of field, or of its nearest ancestor that has one.
func lineOf(lines map[string]int, field string) int {
	for {
		if l, ok := lines[field]; ok {
			return l
		}
		if field == "" {
			return 0
		}
		field = parentField(field)
	}
}

// parentField strips the last element of a field path: spec.checks[2].name → spec.checks[2] →
// spec.checks → spec → "". Map keys in brackets may hold dots (metadata.labels[app.kubernetes.io/name]).
func parentField(field string) string {
	if strings.HasSuffix(field, "]") {
		if i := strings.LastIndex(field, "["); i >= 0 {
			return field[:i]
		}
	}
	if i := strings.LastIndex(field, "."); i >= 0 {
		return field[:i]
	}
	return ""
}

// keyField names the entry key of the map at parent: metadata.labels[team]. A key that would
// make the path ambiguous or span lines is quoted.
func keyField(parent, key string) string {
	if key == "" || strings.ContainsAny(key, "[]\"") || strings.IndexFunc(key, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		key = strconv.Quote(key)
	}
	return parent + "[" + key + "]"
}

func joinField(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}
