package proxysidecar

import (
	"context"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
)

// injectorProbe tells whether the injector hands new pods the target proxy
// yet. istiod loads a changed injection configuration through a watch, some
// time after the installation controller wrote it: a workload restarted
// before then gets the old proxy once more and, restarted once per change,
// would keep it. The probe is a dry-run creation of a pod that asks for
// injection (label sidecar.istio.io/inject=true) in the operator's
// namespace: the API server calls the injector through the installed
// webhooks and returns the pod as injected, and stores nothing.
type injectorProbe struct {
	namespace string
	create    func(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error)
	clock     clock.PassiveClock

	// mu serialises probes: the workers share one answer per target.
	mu        sync.Mutex
	confirmed string    // the target hash the injector was seen to serve
	probed    time.Time // when the last probe ran
	waiting   string    // the last reason the injector did not serve, for the log
}

func newInjectorProbe(namespace string, create func(context.Context, *corev1.Pod) (*corev1.Pod, error), c clock.PassiveClock) *injectorProbe {
	return &injectorProbe{namespace: namespace, create: create, clock: c}
}

// serves reports whether pods created now get t's proxy. A probe the
// injector does not answer for (no permission to create pods in the
// namespace, or injection disabled there) cannot tell, and does not hold
// restarts back: they go ahead as without the probe.
func (p *injectorProbe) serves(ctx context.Context, t *target) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.confirmed == t.hash {
		return true
	}
	now := p.clock.Now()
	if now.Sub(p.probed) < InjectorRecheckInterval/2 {
		return false
	}
	p.probed = now
	logger := klog.FromContext(ctx)
	pod, err := p.create(ctx, probePod(p.namespace))
	switch {
	case refusedByAPIServer(err):
		// No right to create pods there, or the namespace's Pod Security
		// level refuses the injected pod.
		logger.Info("Cannot check the injector before restarting: the dry-run pod is refused; restarting without the check", "namespace", p.namespace, "err", err)
		p.confirmed = t.hash
		return true
	case err != nil:
		p.note(logger, "the injector did not answer: "+err.Error())
		return false
	case pod.Annotations[annotationSidecarStatus] == "":
		logger.Info("Cannot check the injector before restarting: it does not inject pods in the operator's namespace; restarting without the check", "namespace", p.namespace)
		p.confirmed = t.hash
		return true
	}
	if reason := outdated(pod, &t.proxy); reason != "" {
		p.note(logger, "it injects an outdated proxy: "+reason)
		return false
	}
	p.confirmed = t.hash
	p.waiting = ""
	logger.V(1).Info("The injector serves the desired proxy", "image", t.proxy.Image, "hash", t.hash)
	return true
}

// note logs why restarts wait, once per reason.
func (p *injectorProbe) note(logger klog.Logger, why string) {
	if why != p.waiting {
		p.waiting = why
		logger.Info("Restarts wait for the injector to serve the desired proxy", "why", why)
	}
}

// refusedByAPIServer tells the API server's own refusal of the dry run (RBAC,
// Pod Security admission) from a webhook's (which names the webhook).
func refusedByAPIServer(err error) bool {
	return apierrors.IsForbidden(err) && !strings.Contains(err.Error(), "admission webhook")
}

// probePod is the pod the injector is asked to inject. It is never stored.
// It meets the restricted Pod Security Standard, which the operator's
// namespace usually enforces, as the sidecar Istio injects with its CNI node
// agent does; with istio-init (NET_ADMIN) the namespace's policy refuses the
// dry run, and the probe cannot tell.
func probePod(namespace string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "istio-operator-injection-probe-",
			Namespace:    namespace,
			Labels:       map[string]string{"sidecar.istio.io/inject": "true"},
		},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   ptr.To(true),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name: "probe", Image: "registry.invalid/injection-probe:0",
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
}
