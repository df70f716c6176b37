// Command volumes measures what a volumeData check spends reading a restored volume — hashing every
// file with firedrill-probe's manifest — against sha256sum over the same files, alternating the two
// in one run. The page cache is warm for both after the first round; the ratio is the result
// (target ≤ 1.5×). `make bench` runs it.
package main

import (
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"
)

func main() {
	files := flag.Int("files", 1000, "files to hash")
	size := flag.Int64("size", 1<<20, "bytes per file")
	rounds := flag.Int("rounds", 3, "measurements per tool")
	probe := flag.String("probe", "bin/firedrill-probe", "the firedrill-probe binary")
	flag.Parse()
	if err := run(*files, *size, *rounds, *probe); err != nil {
		fmt.Fprintln(os.Stderr, "bench volumes:", err)
		os.Exit(1)
	}
}

func run(n int, size int64, rounds int, probe string) error {
	dir, err := os.MkdirTemp("", "firedrill-bench-volume-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Printf("writing %d files of %d KiB (%d MiB) to %s ...\n", n, size>>10, int64(n)*size>>20, dir)
	var paths []string
	for i := range n {
		p := filepath.Join(dir, fmt.Sprintf("d%02d", i%32), fmt.Sprintf("f%04d", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		if _, err := io.CopyN(f, rand.Reader, size); err != nil {
			return err
		}
		f.Close()
		paths = append(paths, p)
	}
	sum := append([]string{"sha256sum"}, paths...)
	ours := []string{probe, "manifest", dir}
	var peer, mine []time.Duration
	for i := range rounds + 1 {
		for j, argv := range [][]string{sum, ours} {
			if i%2 == 1 {
				j, argv = 1-j, [][]string{sum, ours}[1-j]
			}
			start := time.Now()
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Stdout = io.Discard
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("%s: %w", argv[0], err)
			}
			took := time.Since(start)
			if i == 0 {
				continue // warms the page cache for both
			}
			if j == 0 {
				peer = append(peer, took)
			} else {
				mine = append(mine, took)
			}
		}
	}
	slices.Sort(peer)
	slices.Sort(mine)
	p, m := peer[len(peer)/2], mine[len(mine)/2]
	fmt.Printf("\n%-34s %10s\n%-34s %10s\n%-34s %9.2f×  (target ≤ 1.5×)\n", "sha256sum (median)", p.Round(time.Millisecond),
		"firedrill-probe manifest (median)", m.Round(time.Millisecond), "ratio", float64(m)/float64(p))
	return nil
}
