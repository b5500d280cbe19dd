package input

import (
	"errors"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2/apitest"
	"github.com/meshkeeper/istio-operator/test/cluster"
)

var istioGVR = schema.GroupVersionResource{Group: "operator.kyma-project.io", Version: "v1alpha2", Resource: "istios"}

// TestAPIServerRejectsInvalidResources creates every invalid resource of the
// shared table against a real API server, with strict field validation (as
// kubectl sends it), and checks the error names the field and says what is
// wrong with it.
func TestAPIServerRejectsInvalidResources(t *testing.T) {
	cluster.InstallIstioCRD(t)
	istios := cluster.Current().Dynamic().Resource(istioGVR).Namespace(cluster.Namespace(t, nil))
	cases := apitest.InvalidIstios()
	if len(cases) < 25 {
		t.Fatalf("%d cases; the table must cover every constrained field", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			obj, err := tc.Unstructured("invalid")
			if err != nil {
				t.Fatal(err)
			}
			_, err = istios.Create(t.Context(), &unstructured.Unstructured{Object: obj},
				metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict})
			if err == nil {
				_ = istios.Delete(cluster.Context(t), "invalid", metav1.DeleteOptions{})
				t.Fatalf("accepted; want an error naming %s", tc.Field)
			}
			// Schema and CEL violations are Invalid; unknown fields under
			// strict validation are a BadRequest.
			if !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err) {
				t.Fatalf("got %v (%s), want Invalid or BadRequest", err, apierrors.ReasonForError(err))
			}
			msg := err.Error()
			t.Log(msg)
			if !strings.Contains(msg, tc.Field) {
				t.Errorf("error does not name %s: %s", tc.Field, msg)
			}
			if !strings.Contains(msg, tc.Reason) {
				t.Errorf("error does not say %q: %s", tc.Reason, msg)
			}
			if apierrors.IsInvalid(err) && !causeNames(err, tc.Field) {
				t.Errorf("no cause of the Invalid error is for field %s: %+v", tc.Field, causes(err))
			}
		})
	}
}

// causeNames reports whether a cause of err is for field or one of its
// children (map keys and list items).
func causeNames(err error, field string) bool {
	for _, c := range causes(err) {
		if c.Field == field || strings.HasPrefix(c.Field, field+".") || strings.HasPrefix(c.Field, field+"[") {
			return true
		}
	}
	return false
}

func causes(err error) []metav1.StatusCause {
	var s apierrors.APIStatus
	if !errors.As(err, &s) || s.Status().Details == nil {
		return nil
	}
	return s.Status().Details.Causes
}
