package v1alpha2

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestUninstalledAndKeepsSidecars(t *testing.T) {
	installed := func(reason string) []metav1.Condition {
		return []metav1.Condition{{Type: ConditionInstalled, Status: metav1.ConditionFalse, Reason: reason}}
	}
	for name, tc := range map[string]struct {
		conds       []metav1.Condition
		annotations map[string]string
		uninstalled bool
		keeps       bool
	}{
		"no condition":             {},
		"uninstalling":             {conds: installed(ReasonIstioUninstalling)},
		"uninstalled":              {conds: installed(ReasonIstioUninstallSucceeded), uninstalled: true},
		"uninstalled, keeping":     {conds: installed(ReasonIstioUninstallSucceeded), annotations: map[string]string{AnnotationKeepSidecars: "true"}, uninstalled: true, keeps: true},
		"annotation not true":      {annotations: map[string]string{AnnotationKeepSidecars: "yes"}},
		"other condition's reason": {conds: []metav1.Condition{{Type: ConditionReady, Reason: ReasonIstioUninstallSucceeded}}},
	} {
		i := &Istio{ObjectMeta: metav1.ObjectMeta{Annotations: tc.annotations}, Status: IstioStatus{Conditions: tc.conds}}
		if got := i.Uninstalled(); got != tc.uninstalled {
			t.Errorf("%s: Uninstalled() = %v, want %v", name, got, tc.uninstalled)
		}
		if got := i.KeepsSidecars(); got != tc.keeps {
			t.Errorf("%s: KeepsSidecars() = %v, want %v", name, got, tc.keeps)
		}
	}
}
