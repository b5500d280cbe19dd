package proxysidecar

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clocktesting "k8s.io/utils/clock/testing"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
)

// Restarts wait until a dry-run pod comes back with the target proxy; the
// answer is shared and kept per target; a probe the injector does not
// answer for does not hold restarts back; a failing injector does.
func TestInjectorProbe(t *testing.T) {
	want := desired(t, v1alpha2.IstioSpec{})
	old := want
	old.Image = "docker.io/istio/proxyv2:1.30.2"
	tgt := &target{proxy: want, hash: want.Hash()}
	notInjected := func(context.Context, *corev1.Pod) (*corev1.Pod, error) { return probePod("kyma-system"), nil }
	rbac := func(context.Context, *corev1.Pod) (*corev1.Pod, error) {
		return nil, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", errors.New("cannot create pods"))
	}

	cases := map[string]struct {
		answers []func(context.Context, *corev1.Pod) (*corev1.Pod, error)
		want    []bool
	}{
		"serves the target": {
			answers: []func(context.Context, *corev1.Pod) (*corev1.Pod, error){func(context.Context, *corev1.Pod) (*corev1.Pod, error) { return injectedPod(want), nil }},
			want:    []bool{true, true},
		},
		"old proxy, then the target": {
			answers: []func(context.Context, *corev1.Pod) (*corev1.Pod, error){
				func(context.Context, *corev1.Pod) (*corev1.Pod, error) { return injectedPod(old), nil },
				func(context.Context, *corev1.Pod) (*corev1.Pod, error) { return injectedPod(want), nil },
			},
			want: []bool{false, true},
		},
		"the webhook fails": {
			answers: []func(context.Context, *corev1.Pod) (*corev1.Pod, error){
				func(context.Context, *corev1.Pod) (*corev1.Pod, error) {
					return nil, apierrors.NewInternalError(errors.New(`failed calling webhook "namespace.sidecar-injector.istio.io"`))
				},
			},
			want: []bool{false, false},
		},
		"no permission to dry-run": {answers: []func(context.Context, *corev1.Pod) (*corev1.Pod, error){rbac}, want: []bool{true, true}},
		"no injection there":       {answers: []func(context.Context, *corev1.Pod) (*corev1.Pod, error){notInjected}, want: []bool{true, true}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
			calls := 0
			p := newInjectorProbe("kyma-system", func(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error) {
				if pod.Labels["sidecar.istio.io/inject"] != "true" || pod.Namespace != "kyma-system" {
					t.Errorf("probe pod %s/%v does not ask for injection in the operator's namespace", pod.Namespace, pod.Labels)
				}
				a := tc.answers[min(calls, len(tc.answers)-1)]
				calls++
				return a(ctx, pod)
			}, clk)
			for i, w := range tc.want {
				if got := p.serves(t.Context(), tgt); got != w {
					t.Fatalf("check %d: serves %v, want %v", i, got, w)
				}
				// A second worker within the recheck interval is not a second probe.
				before := calls
				p.serves(t.Context(), tgt)
				if calls != before {
					t.Fatalf("check %d: probed again within %s", i, InjectorRecheckInterval/2)
				}
				clk.Step(InjectorRecheckInterval)
			}
			if got := tc.want[len(tc.want)-1]; got && calls > len(tc.answers) {
				t.Errorf("%d probes after the injector was confirmed", calls)
			}
		})
	}
}
