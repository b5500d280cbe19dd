package istioclient

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	extensionsv1alpha1 "istio.io/client-go/pkg/apis/extensions/v1alpha1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	networkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	networkingv1beta1 "istio.io/client-go/pkg/apis/networking/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	telemetryv1 "istio.io/client-go/pkg/apis/telemetry/v1"
)

// UserResource is a kind of Istio API object that users create. While any
// exists, uninstalling Istio would silently change their traffic, so the
// default deletion strategy blocks on them (the same list as Kyma's).
type UserResource struct {
	Kind     string
	Resource schema.GroupVersionResource
}

// UserResources lists the kinds, each at the newest version Istio serves.
var UserResources = []UserResource{
	{"AuthorizationPolicy", securityv1.SchemeGroupVersion.WithResource("authorizationpolicies")},
	{"DestinationRule", networkingv1.SchemeGroupVersion.WithResource("destinationrules")},
	{"EnvoyFilter", networkingv1alpha3.SchemeGroupVersion.WithResource("envoyfilters")},
	{"Gateway", networkingv1.SchemeGroupVersion.WithResource("gateways")},
	{"PeerAuthentication", securityv1.SchemeGroupVersion.WithResource("peerauthentications")},
	{"ProxyConfig", networkingv1beta1.SchemeGroupVersion.WithResource("proxyconfigs")},
	{"RequestAuthentication", securityv1.SchemeGroupVersion.WithResource("requestauthentications")},
	{"ServiceEntry", networkingv1.SchemeGroupVersion.WithResource("serviceentries")},
	{"Sidecar", networkingv1.SchemeGroupVersion.WithResource("sidecars")},
	{"Telemetry", telemetryv1.SchemeGroupVersion.WithResource("telemetries")},
	{"VirtualService", networkingv1.SchemeGroupVersion.WithResource("virtualservices")},
	{"WasmPlugin", extensionsv1alpha1.SchemeGroupVersion.WithResource("wasmplugins")},
	{"WorkloadEntry", networkingv1.SchemeGroupVersion.WithResource("workloadentries")},
	{"WorkloadGroup", networkingv1.SchemeGroupVersion.WithResource("workloadgroups")},
}

// Scheme knows Istio's API types, for clients and informers of them.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		extensionsv1alpha1.AddToScheme,
		networkingv1.AddToScheme,
		networkingv1alpha3.AddToScheme,
		networkingv1beta1.AddToScheme,
		securityv1.AddToScheme,
		telemetryv1.AddToScheme,
	} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}
