// Command firedrill-local-provisioner provisions the sandbox's real node's default StorageClass:
// for every pending claim of a StorageClass it serves, it makes a directory on the node and a
// `local` PersistentVolume bound to the claim (Velero's file-system backup reads `local` volumes;
// it skips `hostPath` ones); a released volume's directory and object are deleted.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/firedrill-dev/firedrill/sandbox/localpv"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the cluster")
	dir := flag.String("dir", "", "directory on the node that holds the volumes")
	node := flag.String("node", "", "the node the volumes are on")
	name := flag.String("provisioner", "firedrill.dev/local", "provisioner name StorageClasses refer to")
	flag.Parse()
	if err := run(*kubeconfig, localpv.Config{Dir: *dir, Node: *node, Provisioner: *name}); err != nil {
		fmt.Fprintln(os.Stderr, "firedrill-local-provisioner:", err)
		os.Exit(1)
	}
}

func run(kubeconfig string, cfg localpv.Config) error {
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	p, err := localpv.New(c, cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	p.Run(ctx, time.Second, os.Stderr)
	return nil
}
