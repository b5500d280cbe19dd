// Package v1alpha2 is the operator.kyma-project.io/v1alpha2 API: the Istio
// custom resource. It is schema-compatible with the Kyma Istio operator's
// resource of the same name; fields marked "Extension" are this operator's
// own additions and are optional.
//
// +k8s:deepcopy-gen=package
// +k8s:openapi-gen=true
// +groupName=operator.kyma-project.io
package v1alpha2
