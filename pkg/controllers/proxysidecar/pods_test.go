package proxysidecar

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Every pod the controller may have to decide about is selected by exactly
// one of the pod cache's informers (the namespace's only while its
// namespace selects the injector), and the pods it never decides about by
// none.
func TestPodSelectorsCoverTheMeshOnce(t *testing.T) {
	selecting := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "mesh", Labels: map[string]string{labelInjection: "enabled"}}}
	plainNS := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "batch"}}
	injectedLabels := func(more map[string]string) map[string]string {
		l := map[string]string{labelCanonicalName: "web", "security.istio.io/tlsMode": "istio", "app": "web"}
		for k, v := range more {
			l[k] = v
		}
		return l
	}
	cases := []struct {
		name   string
		labels map[string]string
		// injected: the injector's status annotation is on the pod.
		injected bool
	}{
		{"injected", injectedLabels(nil), true},
		{"injected by a revision", injectedLabels(map[string]string{labelRevision: "1-30"}), true},
		{"gateway", map[string]string{labelCanonicalName: "gw", labelSidecarInject: "true"}, true},
		{"opts in by label", map[string]string{labelSidecarInject: "true"}, false},
		{"opts in by revision", map[string]string{labelRevision: operatorRevision}, false},
		{"other revision", map[string]string{labelRevision: "1-30"}, false},
		{"opts out", map[string]string{labelSidecarInject: "false"}, false},
		{"revision but opts out", map[string]string{labelRevision: operatorRevision, labelSidecarInject: "false"}, false},
		{"plain", map[string]string{"app": "job"}, false},
		{"no labels", nil, false},
	}
	global := make([]labels.Selector, len(podSelectors))
	for i, s := range podSelectors {
		sel, err := labels.Parse(s)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		global[i] = sel
	}
	perNamespace, err := labels.Parse(namespacePodSelector)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		for _, ns := range []*corev1.Namespace{selecting, plainNS} {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "p", Labels: tc.labels}}
			if tc.injected {
				pod.Annotations = map[string]string{annotationSidecarStatus: "{}"}
			}
			held := 0
			for _, sel := range global {
				if sel.Matches(labels.Set(pod.Labels)) {
					held++
				}
			}
			if namespaceSelects(ns) && perNamespace.Matches(labels.Set(pod.Labels)) {
				held++
			}
			// What the controller may decide about: a pod with a sidecar,
			// or one the injector would select.
			needed := injected(pod) || selected(ns, pod)
			switch {
			case needed && held != 1:
				t.Errorf("%s in namespace %s: held by %d informers, want 1", tc.name, ns.Name, held)
			case held > 1:
				t.Errorf("%s in namespace %s: held by %d informers, want at most 1", tc.name, ns.Name, held)
			case !needed && held > 0 && !namespaceSelects(ns) && !optsInAnyRevision(pod):
				t.Errorf("%s in namespace %s: held, but never decided about", tc.name, ns.Name)
			}
		}
	}
}

// optsInAnyRevision: the pod labels select some revision's injector; the
// cache holds such pods for revisions other than the operator's too.
func optsInAnyRevision(pod *corev1.Pod) bool {
	_, rev := pod.Labels[labelRevision]
	return rev || pod.Labels[labelSidecarInject] == "true"
}
