package sandbox

import (
	"errors"
	"fmt"
	"strings"

	"github.com/firedrill-dev/firedrill/internal/controlplane"
)

// ErrMissingBinaries is returned (wrapped in a *MissingBinariesError) when component binaries
// have not been built.
var ErrMissingBinaries = errors.New("sandbox component binaries missing")

// ErrAlreadyRunning is returned by Start when Options.Dir holds a sandbox that is still running.
var ErrAlreadyRunning = errors.New("sandbox already running")

// MissingBinariesError names the binaries that are not in the bin directory and how to build them.
type MissingBinariesError struct {
	BinDir  string
	Missing []string
}

func (e *MissingBinariesError) Error() string {
	return fmt.Sprintf("sandbox: %s not found in %s: run `make sandbox-bin` to build the pinned components "+
		"(about 12 minutes the first time), or set FIREDRILL_BIN_DIR to where they are",
		strings.Join(e.Missing, ", "), e.BinDir)
}

func (e *MissingBinariesError) Unwrap() error { return ErrMissingBinaries }

// ComponentError says which component failed to start and shows the end of its log.
type ComponentError = controlplane.ComponentError

// ProcessState identifies one started component by its process group.
type ProcessState = controlplane.ProcessState
