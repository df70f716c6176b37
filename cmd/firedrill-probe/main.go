// Command firedrill-probe is what firedrill runs inside a cluster to look at restored software and
// data from where it lives: a pod in the scratch namespace (behind its NetworkPolicy) or a pod that
// mounts a volume read-only. It prints one JSON document on stdout, which firedrill reads from the
// pod's log, and exits 0 whenever the probe itself ran — a refused connection is a result, not a
// failure of the probe; 1 means it could not run (a directory it cannot read); 2 is a usage
// error. It uses only the standard library and is built static into the probe image.
//
//	firedrill-probe manifest DIR [--ignore GLOB]...   every file and link under DIR: size, mode, SHA-256
//	firedrill-probe http URL [--expect-status 200] [--expect-body RE] [--for 2m]
//	                                                  a GET, repeated until the answer is as expected
//	firedrill-probe tcp HOST:PORT [--for 2m]          a connection, repeated until one succeeds
//	firedrill-probe isolation ALLOWED --blocked ADDR [--for 1m]
//	                                                  ALLOWED must answer, ADDR must not
//	firedrill-probe fill DIR [--files 1] [--size 1MiB] [--seed 1]
//	                                                  write files of known content, print their manifest
//	firedrill-probe serve [--addr :8080] [--body ok]  answer every HTTP request until SIGTERM
//	firedrill-probe run [--timeout 1m] -- CMD [ARG]…  run a command: exit code, output
//	firedrill-probe sleep [DURATION]                  sleep, or until SIGTERM (a pod's sandbox image)
//
// --timeout bounds each attempt (default 10s); --for how long to keep trying (default: once).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/firedrill-dev/firedrill/internal/probe"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// command is one probe: its flags, how many arguments it takes, and what it does.
type command struct {
	args  string // for usage: "DIR", "URL", ...; "" takes none, "[...]" any
	flags func(fl *flag.FlagSet) func(args []string) (any, error)
}

var errUsage = errors.New("usage")

func commands() map[string]command {
	return map[string]command{
		"manifest": {"DIR", func(fl *flag.FlagSet) func([]string) (any, error) {
			var ignore multi
			fl.Var(&ignore, "ignore", "a glob over paths relative to DIR to leave out (repeatable)")
			fl.Var(&ignore, "exclude", "the same as --ignore")
			return func(a []string) (any, error) { return probe.Manifest(a[0], ignore) }
		}},
		"http": {"URL", func(fl *flag.FlagSet) func([]string) (any, error) {
			timeout, within := attempts(fl)
			status := fl.Int("expect-status", 200, "the status code expected")
			body := fl.String("expect-body", "", "a regular expression the body must match")
			return func(a []string) (any, error) {
				re, err := regexp.Compile(*body)
				if err != nil {
					return nil, fmt.Errorf("%w: --expect-body: %v", errUsage, err)
				}
				r, n := probe.Until(*within, func() *probe.HTTPResult { return probe.HTTP(a[0], *timeout) },
					func(r *probe.HTTPResult) bool { return r.Status == *status && re.MatchString(r.Body) })
				r.Attempts = n
				return r, nil
			}
		}},
		"tcp": {"HOST:PORT", func(fl *flag.FlagSet) func([]string) (any, error) {
			timeout, within := attempts(fl)
			return func(a []string) (any, error) {
				r, n := probe.Until(*within, func() *probe.TCPResult { return probe.TCP(a[0], *timeout) },
					func(r *probe.TCPResult) bool { return r.Connected })
				r.Attempts = n
				return r, nil
			}
		}},
		"isolation": {"ALLOWED", func(fl *flag.FlagSet) func([]string) (any, error) {
			timeout, within := attempts(fl)
			blocked := fl.String("blocked", "", "the address that must not answer")
			return func(a []string) (any, error) {
				if *blocked == "" {
					return nil, fmt.Errorf("%w: --blocked ADDR is required", errUsage)
				}
				return probe.Isolation(a[0], *blocked, *within, *timeout), nil
			}
		}},
		"fill": {"DIR", func(fl *flag.FlagSet) func([]string) (any, error) {
			files := fl.Int("files", 1, "number of files")
			size := fl.Int64("size", 1<<20, "bytes per file")
			seed := fl.Uint64("seed", 1, "content seed: the same seed writes the same bytes")
			return func(a []string) (any, error) {
				if err := probe.Fill(a[0], *files, *size, *seed); err != nil {
					return nil, err
				}
				return probe.Manifest(a[0], nil)
			}
		}},
		"serve": {"", func(fl *flag.FlagSet) func([]string) (any, error) {
			addr := fl.String("addr", ":8080", "address to listen on")
			body := fl.String("body", "ok\n", "what every request gets")
			return func([]string) (any, error) { return nil, probe.Serve(signalContext(), *addr, *body) }
		}},
		"run": {"[CMD ARG...]", func(fl *flag.FlagSet) func([]string) (any, error) {
			timeout := fl.Duration("timeout", time.Minute, "kill the command after this long")
			return func(a []string) (any, error) {
				if len(a) == 0 {
					return nil, fmt.Errorf("%w: want a command after --", errUsage)
				}
				return probe.Run(a, *timeout)
			}
		}},
		"sleep": {"[DURATION]", func(fl *flag.FlagSet) func([]string) (any, error) {
			return func(a []string) (any, error) {
				ctx := signalContext()
				if len(a) == 1 && a[0] != "infinity" {
					d, err := time.ParseDuration(a[0])
					if err != nil {
						return nil, fmt.Errorf("%w: duration: %v", errUsage, err)
					}
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, d)
					defer cancel()
				}
				<-ctx.Done()
				return nil, nil
			}
		}},
	}
}

func attempts(fl *flag.FlagSet) (timeout, within *time.Duration) {
	return fl.Duration("timeout", 10*time.Second, "how long one attempt waits for an answer"),
		fl.Duration("for", 0, "how long to keep trying until the answer is as expected")
}

func signalContext() context.Context {
	ctx, _ := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	return ctx
}

func run(args []string, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: firedrill-probe manifest|http|tcp|isolation|fill|serve|run|sleep ARG [flags]")
		return 2
	}
	if args[0] == "pause" { // the sandbox image's name for sleeping until SIGTERM
		args[0] = "sleep"
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "firedrill-probe: unknown probe %q\n", args[0])
		return 2
	}
	fl := flag.NewFlagSet("firedrill-probe "+args[0], flag.ContinueOnError)
	fl.SetOutput(stderr)
	do := c.flags(fl)
	pos, ok := parse(fl, args[1:])
	if !ok || !fits(c.args, len(pos)) {
		fmt.Fprintf(stderr, "usage: firedrill-probe %s %s [flags]\n", args[0], c.args)
		return 2
	}
	out, err := do(pos)
	switch {
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "firedrill-probe %s: %v\n", args[0], err)
		return 2
	case err != nil:
		fmt.Fprintf(stderr, "firedrill-probe %s: %v\n", args[0], err)
		return 1
	case out == nil:
		return 0
	}
	if err := json.NewEncoder(stdout).Encode(out); err != nil {
		fmt.Fprintf(stderr, "firedrill-probe: %v\n", err)
		return 1
	}
	return 0
}

// parse takes flags before or after the arguments; everything after "--" is arguments.
func parse(fl *flag.FlagSet, rest []string) ([]string, bool) {
	var pos []string
	for {
		if err := fl.Parse(rest); err != nil {
			return nil, false
		}
		if fl.NArg() == 0 {
			return pos, true
		}
		// flag stops at "--" (and consumes it) or at the first argument.
		consumed := len(rest) - fl.NArg()
		if consumed > 0 && rest[consumed-1] == "--" {
			return append(pos, fl.Args()...), true
		}
		pos, rest = append(pos, fl.Arg(0)), fl.Args()[1:]
	}
}

func fits(spec string, n int) bool {
	switch {
	case spec == "":
		return n == 0
	case strings.HasPrefix(spec, "["):
		return true
	}
	return n == 1
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }
