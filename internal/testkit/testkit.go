// Package testkit holds the helpers firedrill's tests share: waiting for a condition, a buffer
// safe to write from a process while a test reads it, finding processes a test left running,
// loading a scenario written inline, and a TLS key pair to serve. Only tests import it.
package testkit

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/scenarios"
)

// Eventually polls cond until it returns nil, failing the test with the last error when timeout
// passes. The first polls come fast (a condition often holds at once), then every 250ms.
func Eventually(tb testing.TB, timeout time.Duration, what string, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	wait := 2 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not done after %s: %v", what, timeout, err)
		}
		time.Sleep(wait)
		wait = min(2*wait, 250*time.Millisecond)
	}
}

// Buffer is a bytes.Buffer safe for one writer (a process's output) and a reading test.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// ProcessesUnder lists the live processes, other than this one, whose command line names dir:
// what a drill or a sandbox started with its files there.
func ProcessesUnder(dir string) []string {
	var out []string
	self := "/proc/" + strconv.Itoa(os.Getpid()) + "/cmdline"
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if p == self {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte(dir)) {
			continue
		}
		out = append(out, filepath.Base(filepath.Dir(p))+": "+strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " ")))
	}
	return out
}

// WriteScenario writes yaml to a file of the test and loads it the way `firedrill run` does,
// failing the test when it does not load.
func WriteScenario(tb testing.TB, yaml string) *scenarios.Scenario {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "drill.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		tb.Fatal(err)
	}
	sc, err := scenarios.Load(path)
	if err != nil {
		tb.Fatalf("scenario does not load:\n%v\n%s", err, yaml)
	}
	return sc
}

// Notes records a drill's progress (steps as "step NAME", notes as they come) and calls On with
// each line, so that a test can act at a precise moment of a run.
type Notes struct {
	mu    sync.Mutex
	lines []string
	On    func(line string)
}

func (n *Notes) Step(s string)      { n.Note("step " + s) }
func (n *Notes) Bytes(int64, int64) {}

func (n *Notes) Note(s string) {
	n.mu.Lock()
	n.lines = append(n.lines, s)
	on := n.On
	n.mu.Unlock()
	if on != nil {
		on(s)
	}
}

// Lines returns what was noted so far.
func (n *Notes) Lines() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.lines...)
}

// EventuallyTrue is Eventually for a condition that says yes or no.
func EventuallyTrue(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	Eventually(tb, timeout, what, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
}

var errNotYet = errors.New("not yet")
