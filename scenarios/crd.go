// The marker below shapes the Scenario CustomResourceDefinition controller-gen generates from
// these types (api/v1alpha1): to the API server every field is optional, since Validate says
// what is missing, with its field path, in the Scenario's status. Comments are all it takes:
// this package still imports nothing of firedrill's or Kubernetes'.
//
// +kubebuilder:validation:Optional
package scenarios
