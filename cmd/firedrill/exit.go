package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Exit codes are part of firedrill's interface; the root command's help lists them.
const (
	exitPassed      = 0   // the drill passed, or the command did what was asked
	exitFailed      = 1   // the drill ran and the backup is not good enough
	exitUsage       = 2   // bad flags, arguments or scenario files
	exitError       = 3   // the drill or command could not be carried out
	exitInterrupted = 130 // interrupted (Ctrl-C, SIGTERM)
)

const exitCodesHelp = `Exit status:
  0    passed (or the command did what was asked)
  1    a drill failed: it ran, and a check or objective did not hold
  2    usage error: bad flags or arguments, invalid scenario files
  3    error: the drill or command could not be carried out (server unreachable, timeout, ...)
  130  interrupted (Ctrl-C or SIGTERM); cleanup still ran`

// usageError is a mistake in how firedrill was called; hint says what to do instead.
type usageError struct {
	err  error
	hint string
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(hint, format string, a ...any) error {
	return &usageError{err: fmt.Errorf(format, a...), hint: hint}
}

// codedError carries an exit code chosen by a command, such as 1 for a failed drill. A nil err
// means the command already said everything it had to say.
type codedError struct {
	code int
	err  error
}

func (e *codedError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *codedError) Unwrap() error { return e.err }

// exitCode maps what a command returned to the process exit status and reports the error. It is
// the only place that decides exit codes.
func exitCode(ctx context.Context, err error, stderr io.Writer) int {
	if err == nil {
		return exitPassed
	}
	var (
		ue *usageError
		ce *codedError
	)
	switch {
	case errors.As(err, &ce):
		if ce.err != nil {
			fmt.Fprintf(stderr, "firedrill: %v\n", ce.err)
		}
		return ce.code
	case ctx.Err() != nil:
		fmt.Fprintf(stderr, "firedrill: interrupted: %v\n", err)
		return exitInterrupted
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "firedrill: %v\n", err)
		if ue.hint != "" {
			fmt.Fprintf(stderr, "%s\n", ue.hint)
		}
		return exitUsage
	case strings.HasPrefix(err.Error(), "unknown command"):
		// cobra does not type this one; flag and argument errors are wrapped where they arise.
		fmt.Fprintf(stderr, "firedrill: %v\n", err)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "firedrill: %v\n", err)
		return exitError
	}
}
