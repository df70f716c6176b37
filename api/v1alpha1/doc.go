// Package v1alpha1 is firedrill's Kubernetes API, group firedrill.dev, version v1alpha1: the
// Scenario custom resource, whose spec is a scenario file's spec (scenarios.Spec, the same Go
// type), and the DrillRun, one run of a scenario asked for with kubectl. `firedrill serve
// --scenarios-from cluster` watches both and writes their status (drill/crd).
//
// controller-gen writes the CustomResourceDefinitions from these types into deploy/ (`make
// generate`): the schema shapes what the API server stores, while the scenarios validator, run
// by serve, decides what a Scenario means and says what is wrong in its status. It imports
// nothing of firedrill's but scenarios.
//
// +groupName=firedrill.dev
// +versionName=v1alpha1
package v1alpha1
