package main

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/velerodrill"
	"github.com/firedrill-dev/firedrill/scenarios"
	"github.com/firedrill-dev/firedrill/scratch"
	"github.com/firedrill-dev/firedrill/snapshot/velero"
)

// restConfig is the cluster the global --kubeconfig/--context name, kubectl's way.
func (a *app) restConfig() (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if a.kubeconfig != "" {
		rules.ExplicitPath = a.kubeconfig
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: a.context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w (set --kubeconfig or KUBECONFIG)", err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	return cfg, nil
}

type veleroRestoreResult struct {
	Backup     string            `json:"backup"`
	Restore    string            `json:"restore"`
	Phase      string            `json:"phase"`
	Items      int               `json:"itemsRestored"`
	Warnings   []string          `json:"warnings,omitempty"`
	Namespaces map[string]string `json:"namespaces"`
	Expires    time.Time         `json:"expires"`
	RunID      string            `json:"runID"`
}

func (a *app) restoreVeleroCmd() *cobra.Command {
	var (
		mappings  []string
		veleroNS  string
		keepFor   time.Duration
		allowDNS  bool
		noNetDeny bool
	)
	cmd := &cobra.Command{
		Use:   "velero BACKUP --namespace-mapping SOURCE:TARGET...",
		Short: "Restore a Velero backup into new, isolated namespaces, with the same safety rules as drills",
		Long: `Restores BACKUP into namespaces firedrill creates itself — labelled as firedrill's, with a
default-deny NetworkPolicy (traffic only between the restored namespaces), a ResourceQuota,
LoadBalancer/NodePort Services turned into ClusterIP, CronJobs suspended, Ingresses, Gateway
routes, HPAs and NetworkPolicies left out, and no cluster-scoped resources. A target namespace
that exists is refused before anything is written. The namespaces stay for --keep-for, then
'firedrill janitor' deletes them.`,
		Example: `  firedrill restore velero shop-nightly-20261127030000 --namespace-mapping shop:shop-incident-42
  firedrill restore velero shop-nightly-20261127030000 --namespace-mapping shop:shop-check \
    --namespace-mapping shop-db:shop-db-check --keep-for 4h --allow-dns`,
		Args: exactArgs(1, "one BACKUP name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			mapping := map[string]string{}
			for _, m := range mappings {
				src, dst, ok := strings.Cut(m, ":")
				if !ok || src == "" || dst == "" {
					return usagef("", "--namespace-mapping %q: write SOURCE:TARGET", m)
				}
				if _, dup := mapping[src]; dup {
					return usagef("", "--namespace-mapping: %s is mapped twice", src)
				}
				mapping[src] = dst
			}
			if len(mapping) == 0 {
				return usagef("Run 'firedrill restore velero --help' for usage.", "--namespace-mapping SOURCE:TARGET is required: restores only go into new namespaces")
			}
			ctx := cmd.Context()
			cfg, err := a.restConfig()
			if err != nil {
				return err
			}
			runID := drill.NewRunID(time.Now())
			vc, err := velero.New(cfg, veleroNS)
			if err != nil {
				return err
			}
			// The Restore and its modifier ConfigMap go with the namespaces, when the janitor takes them.
			expires := time.Now().Add(keepFor)
			vc = vc.ForRun(runID).Expiring(expires)
			backup, err := vc.GetBackup(ctx, args[0])
			if err != nil {
				return err
			}
			if _, err := vc.CheckLocation(ctx, backup.StorageLocation); err != nil {
				return err
			}
			cs, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return err
			}
			iso := scenarios.Isolation{DenyNetwork: ptrBool(!noNetDeny), AllowDNS: allowDNS}
			sc := &scenarios.Scenario{Metadata: scenarios.Metadata{Name: "restore-velero"}}
			sc.Spec.Restore.ScratchNamespace = &scenarios.ScratchNamespace{Isolation: iso}
			sc.SetDefaults()
			siso, err := velerodrill.ScratchIsolation(sc.Spec.Restore.ScratchNamespace.Isolation)
			if err != nil {
				return err
			}
			targets := slices.Sorted(maps.Values(mapping))
			mgr := scratch.New(cs)
			fmt.Fprintf(a.err, "Creating isolated namespaces %s ...\n", strings.Join(targets, ", "))
			if err := mgr.Prepare(ctx, runID, "restore-velero", targets, siso, expires); err != nil {
				if errors.Is(err, scratch.ErrExists) || errors.Is(err, scratch.ErrInvalidName) {
					return &codedError{code: exitUsage, err: err}
				}
				return err
			}
			p := newProgress(a.err, "")
			p.Step("restore " + backup.Name)
			info, err := vc.Restore(ctx, velero.RestoreOptions{Backup: backup.Name, NamespaceMapping: mapping, Isolation: sc.Spec.Restore.ScratchNamespace.Isolation},
				func(done, total int) { p.Note(fmt.Sprintf("%d of %d items", done, total)) })
			p.Close()
			if err != nil {
				return fmt.Errorf("%w\nthe namespaces %s stay until %s (firedrill janitor), or delete them now", err, strings.Join(targets, ", "), expires.Format(time.RFC3339))
			}
			res := veleroRestoreResult{Backup: backup.Name, Restore: info.Name, Phase: info.Phase, Items: info.ItemsRestored,
				Warnings: info.FirstWarnings, Namespaces: mapping, Expires: expires, RunID: runID}
			return a.print(res, func(p printer) {
				p("Restored %s (%d items, %s) with restore %s:\n", res.Backup, res.Items, res.Phase, res.Restore)
				for _, src := range slices.Sorted(maps.Keys(mapping)) {
					p("  %s → %s\n", src, mapping[src])
				}
				for _, w := range res.Warnings {
					p("  warning: %s\n", w)
				}
				p("Isolated: network denied except between these namespaces, a ResourceQuota, Services ClusterIP, CronJobs suspended.\n")
				p("They stay until %s; then 'firedrill janitor' deletes them.\n", expires.Local().Format("2006-01-02 15:04"))
			})
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&mappings, "namespace-mapping", nil, "SOURCE:TARGET; TARGET must not exist (repeat for several namespaces)")
	fl.StringVar(&veleroNS, "velero-namespace", scenarios.DefaultVeleroNamespace, "namespace Velero runs in")
	fl.DurationVar(&keepFor, "keep-for", 24*time.Hour, "how long the restored namespaces stay before the janitor may delete them")
	fl.BoolVar(&allowDNS, "allow-dns", false, "let the restored pods resolve DNS through the network policy")
	fl.BoolVar(&noNetDeny, "no-network-policy", false, "do not isolate the network (the copy may reach production services)")
	return cmd
}

func ptrBool(b bool) *bool { return &b }
