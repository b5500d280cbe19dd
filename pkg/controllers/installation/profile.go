package installation

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
)

// The production thresholds, the Kyma Istio module's: a cluster with less
// than 5 CPUs or 10 Gi of memory allocatable in total gets the evaluation
// profile.
var (
	productionCPU    = resource.MustParse("5")
	productionMemory = resource.MustParse("10Gi")
)

// DefaultProfilePromotionDelay is how long a cluster must stay at or above
// the production thresholds before an evaluation installation is promoted.
const DefaultProfilePromotionDelay = 10 * time.Minute

// capacity is what the cluster's nodes can run, in total.
type capacity struct {
	cpu, memory resource.Quantity
}

func (c capacity) production() bool {
	return c.cpu.Cmp(productionCPU) >= 0 && c.memory.Cmp(productionMemory) >= 0
}

func (c capacity) String() string {
	return fmt.Sprintf("%s CPUs and %s of memory", c.cpu.String(), c.memory.String())
}

// clusterCapacity sums the nodes' allocatable resources.
func clusterCapacity(nodes []*corev1.Node) capacity {
	var c capacity
	for _, n := range nodes {
		c.cpu.Add(n.Status.Allocatable[corev1.ResourceCPU])
		c.memory.Add(n.Status.Allocatable[corev1.ResourceMemory])
	}
	return c
}

// profileChoice is the profile to install and why.
type profileChoice struct {
	profile v1alpha2.Profile
	// why is a sentence for the log and the Event of a change.
	why string
	// recheck, when not 0, is when a pending promotion is due.
	recheck time.Duration
	// installed is the profile installed now ("" for none).
	installed v1alpha2.Profile
}

// chooseProfile is the profile rule. It never flaps:
//   - the resource's spec.profile wins;
//   - a first installation gets Production when the cluster has at least 5
//     CPUs and 10 Gi allocatable, Evaluation otherwise;
//   - an installation stays on its profile, except that Evaluation is
//     promoted to Production once the cluster has been at or above both
//     thresholds for the promotion delay without a break;
//   - nothing demotes Production automatically: a shrinking cluster keeps
//     it (set spec.profile to change it).
//
// A node that comes and goes near the threshold therefore changes nothing,
// and at most one automatic change ever happens. aboveSince is when the
// cluster was last seen to cross the thresholds upwards (zero while below);
// installed is the profile installed ("" for none).
func chooseProfile(override, installed v1alpha2.Profile, c capacity, aboveSince, now time.Time, delay time.Duration) profileChoice {
	switch {
	case override != "":
		return profileChoice{profile: override, why: "spec.profile asks for it"}
	case installed == v1alpha2.ProfileProduction:
		return profileChoice{profile: installed, why: "it is installed, and a profile is never lowered automatically"}
	case installed == "" && c.production():
		return profileChoice{profile: v1alpha2.ProfileProduction, why: fmt.Sprintf("the cluster has %s allocatable, at least %s CPUs and %s", c, productionCPU.String(), productionMemory.String())}
	case installed == "":
		return profileChoice{profile: v1alpha2.ProfileEvaluation, why: fmt.Sprintf("the cluster has %s allocatable, less than %s CPUs or %s", c, productionCPU.String(), productionMemory.String())}
	case !c.production():
		return profileChoice{profile: installed, why: fmt.Sprintf("the cluster has %s allocatable", c)}
	}
	if held := now.Sub(aboveSince); held < delay {
		return profileChoice{profile: installed, recheck: delay - held,
			why: fmt.Sprintf("the cluster has %s allocatable since %s; promotion to Production once that has held for %s", c, aboveSince.UTC().Format(time.RFC3339), delay)}
	}
	return profileChoice{profile: v1alpha2.ProfileProduction,
		why: fmt.Sprintf("the cluster has had %s allocatable, at least %s CPUs and %s, for %s", c, productionCPU.String(), productionMemory.String(), delay)}
}

// nodeCapacity keeps what the profile rule reads of a Node: its name and
// allocatable CPU and memory. The node cache is this controller's alone.
func nodeCapacity(obj runtime.Object) runtime.Object {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj
	}
	trimmed := &corev1.Node{}
	trimmed.Name = n.Name
	trimmed.UID = n.UID
	trimmed.ResourceVersion = n.ResourceVersion
	trimmed.Status.Allocatable = corev1.ResourceList{}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := n.Status.Allocatable[r]; ok {
			trimmed.Status.Allocatable[r] = q
		}
	}
	return trimmed
}

// allocatableChanged reports whether a node update can change the capacity.
func allocatableChanged(old, cur any) bool {
	o, ok1 := old.(*corev1.Node)
	n, ok2 := cur.(*corev1.Node)
	if !ok1 || !ok2 {
		return true
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		a, b := o.Status.Allocatable[r], n.Status.Allocatable[r]
		if a.Cmp(b) != 0 {
			return true
		}
	}
	return false
}

// profile decides the profile for the served resource and remembers when
// the cluster crossed the thresholds.
func (c *Controller) profile(istio *v1alpha2.Istio) (profileChoice, error) {
	nodes, err := c.nodes.List(everything)
	if err != nil {
		return profileChoice{}, err
	}
	capa := clusterCapacity(nodes)
	now := c.clock.Now()
	c.mu.Lock()
	if !capa.production() {
		c.aboveSince = time.Time{}
	} else if c.aboveSince.IsZero() {
		c.aboveSince = now
	}
	since := c.aboveSince
	c.mu.Unlock()
	installed := c.installedProfile(istio)
	choice := chooseProfile(istio.Spec.Profile, installed, capa, since, now, c.promotionDelay)
	choice.installed = installed
	return choice, nil
}

// installedProfile is the profile the installed Istio has: the one the
// status records, or Production for an installation made before the
// operator chose profiles (it installed only that), or "" for none.
func (c *Controller) installedProfile(istio *v1alpha2.Istio) v1alpha2.Profile {
	if p := istio.Status.Profile; p != "" {
		return p
	}
	if c.anyOwned() {
		return v1alpha2.ProfileProduction
	}
	return ""
}
