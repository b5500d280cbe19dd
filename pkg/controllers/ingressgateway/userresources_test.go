package ingressgateway

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	networkingapi "istio.io/api/networking/v1alpha3"
	typeapi "istio.io/api/type/v1beta1"
	networkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	networkinglisters "istio.io/client-go/pkg/listers/networking/v1alpha3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
)

var gatewayLabels = map[string]string{"app": "istio-ingressgateway", "istio": "ingressgateway"}

func envoyFilter(name string, change func(*networkingv1alpha3.EnvoyFilter)) *networkingv1alpha3.EnvoyFilter {
	f := &networkingv1alpha3.EnvoyFilter{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: istioclient.Namespace}}
	if change != nil {
		change(f)
	}
	return f
}

func selecting(l map[string]string) func(*networkingv1alpha3.EnvoyFilter) {
	return func(f *networkingv1alpha3.EnvoyFilter) {
		f.Spec.WorkloadSelector = &networkingapi.WorkloadSelector{Labels: l}
	}
}

func TestTargetingFilters(t *testing.T) {
	now := metav1.Now()
	filters := []*networkingv1alpha3.EnvoyFilter{
		envoyFilter("mesh-wide", nil),
		envoyFilter("gateway-by-istio-label", selecting(map[string]string{"istio": "ingressgateway"})),
		envoyFilter("gateway-by-both-labels", selecting(gatewayLabels)),
		envoyFilter("other-workload", selecting(map[string]string{"app": "istiod"})),
		envoyFilter("gateway-and-more", selecting(map[string]string{"istio": "ingressgateway", "version": "v2"})),
		envoyFilter("gateway-api", func(f *networkingv1alpha3.EnvoyFilter) {
			f.Spec.TargetRefs = []*typeapi.PolicyTargetReference{{Group: "gateway.networking.k8s.io", Kind: "Gateway", Name: "public"}}
		}),
		envoyFilter("operators-own", func(f *networkingv1alpha3.EnvoyFilter) {
			f.Labels = map[string]string{istioclient.ManagedByLabel: istioclient.ManagedByValue}
		}),
		envoyFilter("istio-installer-owned", func(f *networkingv1alpha3.EnvoyFilter) {
			f.Labels = map[string]string{"install.operator.istio.io/owning-resource": "installed-state"}
		}),
		envoyFilter("being-deleted", func(f *networkingv1alpha3.EnvoyFilter) { f.DeletionTimestamp = &now }),
	}
	want := []string{
		"istio-system/gateway-by-both-labels", "istio-system/gateway-by-istio-label", "istio-system/mesh-wide",
	}
	if got := targetingFilters(filters, gatewayLabels); !slices.Equal(got, want) {
		t.Errorf("targeting filters %v, want %v", got, want)
	}
	// Without the gateway's Deployment only filters without a selector
	// are known to apply to it.
	if got := targetingFilters(filters, nil); !slices.Equal(got, []string{"istio-system/mesh-wide"}) {
		t.Errorf("targeting filters without the gateway's labels %v", got)
	}
}

func TestUserResourceCondition(t *testing.T) {
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	lister := networkinglisters.NewEnvoyFilterLister(indexer)
	cond, err := userResourceCondition(lister, gatewayLabels)
	if err != nil {
		t.Fatal(err)
	}
	if cond.Type != v1alpha2.ConditionIngressTargetingUserResourceFound || cond.Status != metav1.ConditionFalse ||
		cond.Reason != v1alpha2.ReasonIngressNoUserResourceFound {
		t.Errorf("no filters: %+v", cond)
	}

	for i := range 7 {
		if err := indexer.Add(envoyFilter(fmt.Sprintf("filter-%d", i), nil)); err != nil {
			t.Fatal(err)
		}
	}
	if err := indexer.Add(&networkingv1alpha3.EnvoyFilter{ObjectMeta: metav1.ObjectMeta{Name: "elsewhere", Namespace: "default"}}); err != nil {
		t.Fatal(err)
	}
	cond, err = userResourceCondition(lister, gatewayLabels)
	if err != nil {
		t.Fatal(err)
	}
	if cond.Status != metav1.ConditionTrue || cond.Reason != v1alpha2.ReasonIngressTargetingUserResource {
		t.Fatalf("seven filters: %+v", cond)
	}
	for _, want := range []string{"7 EnvoyFilters", "istio-system/filter-0", "istio-system/filter-4", "and 2 more"} {
		if !strings.Contains(cond.Message, want) {
			t.Errorf("message %q does not contain %q", cond.Message, want)
		}
	}
	if strings.Contains(cond.Message, "filter-5") || strings.Contains(cond.Message, "elsewhere") {
		t.Errorf("message %q names more than five, or a filter outside %s", cond.Message, istioclient.Namespace)
	}
}
