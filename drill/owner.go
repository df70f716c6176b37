package drill

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// OwnerFile is the file in each run's work directory that names the process running the drill.
// The janitor removes a work directory only once that process is gone, so a directory is never
// recognised by its name alone.
const OwnerFile = "firedrill-owner.json"

// WorkDirPrefix starts the name of every run's work directory: WorkDirPrefix + run id + "-" +
// a random suffix, in Runner.WorkRoot.
const WorkDirPrefix = "firedrill-"

// Owner is the content of OwnerFile. Runner is the process (host, pid and the pid's start time,
// as in Record.Runner) that runs the drill; KeptUntil is set when cleanup kept the directory for
// inspection, and keeps it from the janitor until then even though its runner has ended.
type Owner struct {
	Run       string     `json:"run"`
	Scenario  string     `json:"scenario"`
	Runner    RunnerInfo `json:"runner"`
	StartedAt time.Time  `json:"startedAt"`
	KeptUntil *time.Time `json:"keptUntil,omitempty"`
}

// WriteOwner writes o into dir's OwnerFile, readable by its owner only, replacing it whole: a
// reader never sees half a file.
func WriteOwner(dir string, o Owner) error {
	b, err := json.MarshalIndent(o, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+OwnerFile+"-*")
	if err != nil {
		return fmt.Errorf("write owner file: %w", err)
	}
	_, err = tmp.Write(append(b, '\n'))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, OwnerFile))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write owner file in %s: %w", dir, err)
	}
	return nil
}

// ErrNoOwner: a directory has no readable owner file, so nothing says whose it is.
var ErrNoOwner = errors.New("no owner file")

// ReadOwner reads dir's OwnerFile. A missing, unreadable or incomplete file wraps ErrNoOwner.
func ReadOwner(dir string) (Owner, error) {
	var o Owner
	b, err := os.ReadFile(filepath.Join(dir, OwnerFile))
	if err != nil {
		return o, fmt.Errorf("%w in %s: %w", ErrNoOwner, dir, err)
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return o, fmt.Errorf("%w in %s: %w", ErrNoOwner, dir, err)
	}
	if o.Run == "" || o.Runner.PID <= 0 {
		return o, fmt.Errorf("%w in %s: no run id or pid", ErrNoOwner, dir)
	}
	if base := filepath.Base(dir); !strings.HasPrefix(base, WorkDirPrefix+o.Run+"-") {
		return o, fmt.Errorf("%w in %s: it names run %s, which is not the directory's", ErrNoOwner, dir, o.Run)
	}
	return o, nil
}

// ownerProcess is ri, the process Runner.Runner names, or this process when it names none (its
// start time is then unknown, and the janitor compares the pid only).
func ownerProcess(ri RunnerInfo) RunnerInfo {
	if ri.PID != 0 {
		return ri
	}
	host, _ := os.Hostname()
	return RunnerInfo{Host: host, PID: os.Getpid()}
}
