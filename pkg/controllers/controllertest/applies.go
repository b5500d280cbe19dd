package controllertest

import (
	"k8s.io/apimachinery/pkg/types"
	clienttesting "k8s.io/client-go/testing"
)

// Applies are the recorded server-side applies (apply patches) of the
// resource.
func Applies(all []clienttesting.Action, resource string) []clienttesting.PatchAction {
	var out []clienttesting.PatchAction
	for _, a := range Actions(all, "patch", resource, "") {
		if p, ok := a.(clienttesting.PatchAction); ok && p.GetPatchType() == types.ApplyPatchType {
			out = append(out, p)
		}
	}
	return out
}
