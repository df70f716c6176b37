package velero

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// ErrNoContainerEngine: the kind target needs Docker or Podman and neither is usable here.
var ErrNoContainerEngine = errors.New("needs a container engine (docker or podman)")

// EngineProbe finds programs and runs them; tests give it fakes on a PATH of their own.
type EngineProbe struct {
	LookPath func(file string) (string, error)
	// Run runs a program and returns its combined output.
	Run func(ctx context.Context, path string, args ...string) ([]byte, error)
}

// SystemEngineProbe looks on $PATH and runs programs for real.
func SystemEngineProbe() EngineProbe {
	return EngineProbe{
		LookPath: exec.LookPath,
		Run: func(ctx context.Context, path string, args ...string) ([]byte, error) {
			var out bytes.Buffer
			cmd := exec.CommandContext(ctx, path, args...)
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			return out.Bytes(), err
		},
	}
}

// FindContainerEngine returns "docker" or "podman", the first whose daemon answers `info`, or an
// error (ErrNoContainerEngine) saying exactly what is missing: no program on PATH, or a program
// whose daemon does not answer, with what it said.
func FindContainerEngine(ctx context.Context, p EngineProbe) (string, error) {
	var problems []string
	for _, name := range []string{"docker", "podman"} {
		path, err := p.LookPath(name)
		if err != nil {
			continue
		}
		ictx, cancel := context.WithTimeout(ctx, 20*time.Second)
		out, err := p.Run(ictx, path, "info", "--format", "{{.ServerVersion}}")
		cancel()
		if err == nil {
			return name, nil
		}
		problems = append(problems, fmt.Sprintf("%s found at %s but its daemon is not reachable (%s info: %s)", name, path, name, firstLine(out, err)))
	}
	if len(problems) == 0 {
		return "", fmt.Errorf("%w: none found on PATH", ErrNoContainerEngine)
	}
	return "", fmt.Errorf("%w: %s", ErrNoContainerEngine, strings.Join(problems, "; "))
}

func firstLine(out []byte, err error) string {
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return err.Error()
}
