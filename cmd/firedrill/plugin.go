package main

import (
	"errors"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// pluginName is what firedrill is called when kubectl runs it as a plugin: an executable named
// kubectl-firedrill on PATH (krew installs it so: deploy/krew/firedrill.yaml).
const pluginName = "kubectl firedrill"

// programName is how the user called firedrill, from os.Args[0]: "kubectl firedrill" for the
// plugin, so that help and hints name the command the user actually types.
func programName(arg0 string) string {
	if strings.HasPrefix(strings.TrimSuffix(filepath.Base(arg0), ".exe"), "kubectl-") {
		return pluginName
	}
	return "firedrill"
}

// quotedCommand is a command line quoted in prose or a hint: 'firedrill history'.
var quotedCommand = strings.NewReplacer("'firedrill ", "'"+pluginName+" ")

// exampleCommand is a command line in an example: at the start of a line, in $(...), after
// a pipe or quoted.
var exampleCommand = regexp.MustCompile(`(?m)(^\s*|\$\(|\| |')firedrill `)

// renameForPlugin makes every help page, example and flag description of the tree say
// `kubectl firedrill …`.
func renameForPlugin(root *cobra.Command) {
	if root.Annotations == nil {
		root.Annotations = map[string]string{}
	}
	root.Annotations[cobra.CommandDisplayNameAnnotation] = pluginName
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		c.Long = quotedCommand.Replace(c.Long)
		c.Example = exampleCommand.ReplaceAllString(c.Example, "${1}"+pluginName+" ")
		rename := func(f *pflag.Flag) { f.Usage = quotedCommand.Replace(f.Usage) }
		c.LocalNonPersistentFlags().VisitAll(rename)
		c.PersistentFlags().VisitAll(rename)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// pluginError names commands in an error and its hint as the plugin's: "list runs with
// 'kubectl firedrill history'", "Run 'kubectl firedrill serve --help' for usage."
func pluginError(err error) error {
	if err == nil {
		return nil
	}
	var ue *usageError
	if errors.As(err, &ue) {
		ue.hint = quotedCommand.Replace(ue.hint)
	}
	return renamedError{err}
}

// renamedError is err with the commands it names renamed; errors.As still finds what it wraps.
type renamedError struct{ err error }

func (e renamedError) Error() string { return quotedCommand.Replace(e.err.Error()) }
func (e renamedError) Unwrap() error { return e.err }
