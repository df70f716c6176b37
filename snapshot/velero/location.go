package velero

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// LocationInfo describes a BackupStorageLocation.
type LocationInfo struct {
	Name     string
	Provider string
	Bucket   string
	Prefix   string
	Default  bool
	ReadOnly bool
	Phase    string
	Message  string
	// LastValidated is when Velero last checked the location; zero if it never did.
	LastValidated time.Time
}

// CheckLocation returns the BackupStorageLocation name (the default location when empty) and
// fails unless it exists and Velero found it Available.
func (c *Client) CheckLocation(ctx context.Context, name string) (*LocationInfo, error) {
	var bsl velerov1.BackupStorageLocation
	if name == "" {
		var list velerov1.BackupStorageLocationList
		if err := c.kube.List(ctx, &list, client.InNamespace(c.namespace)); err != nil {
			return nil, fmt.Errorf("list BackupStorageLocations in namespace %s: %w", c.namespace, err)
		}
		var defaults, all []string
		for i := range list.Items {
			all = append(all, list.Items[i].Name)
			if list.Items[i].Spec.Default {
				defaults = append(defaults, list.Items[i].Name)
				bsl = list.Items[i]
			}
		}
		switch len(defaults) {
		case 0:
			sort.Strings(all)
			return nil, fmt.Errorf("%w: no default BackupStorageLocation in namespace %s (there are: %s): name one, or mark one default with `velero backup-location set NAME --default`",
				ErrLocationUnavailable, c.namespace, listOrNone(all))
		case 1:
		default:
			sort.Strings(defaults)
			return nil, fmt.Errorf("%w: several default BackupStorageLocations in namespace %s (%s): name the one to use",
				ErrLocationUnavailable, c.namespace, strings.Join(defaults, ", "))
		}
	} else if err := c.get(ctx, name, &bsl); err != nil {
		if isGone(err) {
			return nil, fmt.Errorf("%w: BackupStorageLocation %s/%s not found", ErrLocationUnavailable, c.namespace, name)
		}
		return nil, fmt.Errorf("get BackupStorageLocation %s/%s: %w", c.namespace, name, err)
	}
	info := locationInfo(&bsl)
	switch info.Phase {
	case string(velerov1.BackupStorageLocationPhaseAvailable):
		return info, nil
	case "":
		return info, fmt.Errorf("%w: BackupStorageLocation %s/%s has not been validated by Velero yet: is the Velero server running?",
			ErrLocationUnavailable, c.namespace, info.Name)
	default:
		msg := info.Message
		if msg == "" {
			msg = "Velero gave no reason"
		}
		return info, fmt.Errorf("%w: BackupStorageLocation %s/%s is %s: %s: check the bucket and credentials",
			ErrLocationUnavailable, c.namespace, info.Name, info.Phase, msg)
	}
}

func locationInfo(bsl *velerov1.BackupStorageLocation) *LocationInfo {
	info := &LocationInfo{
		Name:     bsl.Name,
		Provider: bsl.Spec.Provider,
		Default:  bsl.Spec.Default,
		ReadOnly: bsl.Spec.AccessMode == velerov1.BackupStorageLocationAccessModeReadOnly,
		Phase:    string(bsl.Status.Phase),
		Message:  bsl.Status.Message,
	}
	if os := bsl.Spec.ObjectStorage; os != nil {
		info.Bucket, info.Prefix = os.Bucket, os.Prefix
	}
	if t := bsl.Status.LastValidationTime; t != nil {
		info.LastValidated = t.Time
	}
	return info
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
