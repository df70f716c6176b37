// Command images builds the sandbox's real-node images (pause, probe, orders, firedrill, velero) into bin/images;
// hack/sandbox-bin.sh runs it after the binaries.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/firedrill-dev/firedrill/sandbox/image"
)

func main() {
	bin := flag.String("bin", "bin", "directory of the component binaries; images go to its images/")
	flag.Parse()
	repo, err := os.Getwd()
	if err == nil {
		err = image.BuildStandard(context.Background(), repo, *bin, filepath.Join(*bin, "images"), os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}
