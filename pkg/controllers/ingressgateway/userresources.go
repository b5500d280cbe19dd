package ingressgateway

import (
	"fmt"
	"sort"

	networkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	networkinglisters "istio.io/client-go/pkg/listers/networking/v1alpha3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/status"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
	"github.com/meshkeeper/istio-operator/pkg/message"
)

// listedFilters is how many EnvoyFilters the condition message names.
const listedFilters = 5

// targetingFilters names the EnvoyFilters created by users in Istio's
// namespace that apply to the ingress gateway's pods, whose labels are
// given. Istio's namespace is the mesh's root namespace: a filter there
// without a workload selector applies to every proxy of the mesh, the
// gateway's included; with one, to the pods whose labels it matches. A
// filter with targetRefs applies to Gateway API gateways, services or
// service entries, never to this Deployment's pods.
func targetingFilters(filters []*networkingv1alpha3.EnvoyFilter, gatewayLabels map[string]string) []string {
	var names []string
	for _, f := range filters {
		if f.DeletionTimestamp != nil || !istioclient.CreatedByUser(f.Labels) || len(f.Spec.GetTargetRefs()) > 0 {
			continue
		}
		sel := f.Spec.GetWorkloadSelector().GetLabels()
		if len(sel) == 0 || labels.SelectorFromSet(sel).Matches(labels.Set(gatewayLabels)) {
			names = append(names, f.Namespace+"/"+f.Name)
		}
	}
	sort.Strings(names)
	return names
}

// userResourceCondition is IngressTargetingUserResourceFound for the
// EnvoyFilters in Istio's namespace.
func userResourceCondition(filters networkinglisters.EnvoyFilterLister, gatewayLabels map[string]string) (status.Condition, error) {
	all, err := filters.EnvoyFilters(istioclient.Namespace).List(labels.Everything())
	if err != nil {
		return status.Condition{}, err
	}
	found := targetingFilters(all, gatewayLabels)
	if len(found) == 0 {
		return status.Condition{
			Type: v1alpha2.ConditionIngressTargetingUserResourceFound, Status: metav1.ConditionFalse,
			Reason:  v1alpha2.ReasonIngressNoUserResourceFound,
			Message: fmt.Sprintf("No EnvoyFilter created by users in %s applies to the ingress gateway.", istioclient.Namespace),
		}, nil
	}
	return status.Condition{
		Type: v1alpha2.ConditionIngressTargetingUserResourceFound, Status: metav1.ConditionTrue,
		Reason: v1alpha2.ReasonIngressTargetingUserResource,
		Message: fmt.Sprintf("%d EnvoyFilters created by users apply to the ingress gateway, whose behaviour the operator then cannot vouch for: %s. "+
			"The operator does not change or delete them.", len(found), message.Named(found, listedFilters)),
	}, nil
}
