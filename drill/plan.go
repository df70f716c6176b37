package drill

import "github.com/firedrill-dev/firedrill/scenarios"

// Plan is what a run would do, for `firedrill plan`.
type Plan struct {
	Scenario   string      `json:"scenario"`
	Backup     []string    `json:"backup"`
	Restore    []string    `json:"restore"`
	Isolation  []string    `json:"isolation"`
	Checks     []PlanCheck `json:"checks"`
	Objectives []string    `json:"objectives"`
	Cleanup    []string    `json:"cleanup"`
	// Writes lists everything the run would write outside its scratch target.
	Writes []string `json:"writes"`
	// Selection is how the preflight chose the backup among its source's (latestFrom).
	Selection *SelectionRecord `json:"selection,omitempty"`
}

// PlanCheck is one check as a plan shows it.
type PlanCheck struct {
	Name string `json:"name"`
	// Group is the restore group whose restore the check follows; empty for the checks of the whole.
	Group       string `json:"group,omitempty"`
	Type        string `json:"type"`
	Description string `json:"description"`
}

// PlanOf describes the drill of sc that run would carry out; run may have done its preflight,
// which lets it name the backup it chose.
func PlanOf(sc *scenarios.Scenario, run Run) Plan {
	p := Plan{Scenario: sc.Metadata.Name}
	run.Plan(&p)
	if g, ok := run.(Grouped); ok {
		for i, name := range g.Groups() {
			for _, c := range g.GroupChecks(i, false) {
				p.Checks = append(p.Checks, PlanCheck{Name: c.Name, Group: name, Type: c.Type, Description: c.Description})
			}
		}
	}
	for _, c := range run.Checks(false) {
		p.Checks = append(p.Checks, PlanCheck{Name: c.Name, Type: c.Type, Description: c.Description})
	}
	if o := sc.Spec.Objectives; o.RTO.Duration > 0 {
		p.Objectives = append(p.Objectives, "RTO ≤ "+o.RTO.String()+" (restore start until every check passed)")
	}
	if o := sc.Spec.Objectives; o.RPO.Duration > 0 {
		p.Objectives = append(p.Objectives, "RPO ≤ "+o.RPO.String()+" (age of the backed-up data at restore start)")
	}
	switch c := sc.Spec.Cleanup; c.Policy {
	case scenarios.CleanupNever:
		p.Cleanup = append(p.Cleanup, "policy Never: scratch resources are kept after every run, until the janitor removes them "+c.KeepFor.String()+" later")
	case scenarios.CleanupOnSuccess:
		p.Cleanup = append(p.Cleanup, "policy OnSuccess: scratch resources are removed after a pass, kept for "+c.KeepFor.String()+" after any other result")
	default:
		p.Cleanup = append(p.Cleanup, "policy Always: scratch resources are removed after every run, whatever its result")
	}
	return p
}
