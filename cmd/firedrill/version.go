package main

import (
	"runtime"
	"runtime/debug"

	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/spf13/cobra"
)

// Set at build time by the Makefile: -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = "unknown"
)

type versionInfo struct {
	Version    string              `json:"version"`
	Commit     string              `json:"commit"`
	Go         string              `json:"go"`
	Platform   string              `json:"platform"`
	Libraries  map[string]string   `json:"libraries"`
	Components []sandbox.Component `json:"sandboxComponents"`
}

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of firedrill and of the components it was built and tested with",
		Example: `  firedrill version
  firedrill version -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := versionInfo{
				Version: version, Commit: commit, Go: runtime.Version(),
				Platform:   runtime.GOOS + "/" + runtime.GOARCH,
				Libraries:  map[string]string{},
				Components: sandbox.Components,
			}
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, d := range bi.Deps {
					switch d.Path {
					case "k8s.io/client-go", "github.com/vmware-tanzu/velero", "go.etcd.io/etcd/client/v3":
						info.Libraries[d.Path] = d.Version
					}
				}
			}
			return a.print(info, func(p printer) {
				p("firedrill %s (commit %s, %s, %s)\n", info.Version, info.Commit, info.Go, info.Platform)
				p("sandbox components (make sandbox-bin):\n")
				for _, c := range info.Components {
					p("  %-24s %s\n", c.Name, c.Version)
				}
				if len(info.Libraries) > 0 {
					p("libraries:\n")
					for _, k := range sortedKeys(info.Libraries) {
						p("  %-32s %s\n", k, info.Libraries[k])
					}
				}
			})
		},
	}
}
