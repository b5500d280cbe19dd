// Package status writes the parts of an Istio resource's status that one
// controller owns. Every controller has its own field manager and applies
// (server-side apply, status subresource) only its own conditions and
// fields; conditions are a map-list keyed by type, so owners never conflict
// and never overwrite each other. Nothing is written when the status already
// says what the controller would write.
package status

import (
	"context"
	"fmt"
	"k8s.io/apimachinery/pkg/api/equality"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	istioac "github.com/meshkeeper/istio-operator/pkg/generated/applyconfiguration/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/generated/clientset/versioned"
)

// FieldManagerPrefix prefixes each controller's field manager name.
const FieldManagerPrefix = "istio-operator-"

// Condition is a condition as a controller wants it; the writer fills in
// the observed generation and the transition time.
type Condition struct {
	Type    string
	Status  metav1.ConditionStatus
	Reason  string
	Message string
}

// Update is everything a controller owns in the status. Server-side apply
// removes owned fields that an apply leaves out, so an Update must always
// carry the controller's complete set; the optional summary fields belong
// to the installation controller only.
type Update struct {
	Conditions []Condition

	State            *v1alpha2.State
	Description      *string
	InstalledVersion *string
	// Profile is the installed profile (installation controller).
	Profile *v1alpha2.Profile
	// ObservedGeneration, when true, records the generation the summary describes.
	ObservedGeneration bool
	// Window is status.nextMaintenanceWindow, owned by the proxy sidecar
	// controller: it sets Window on every update, with Opens nil when no
	// restart waits for a window (which clears the field).
	Window *Window
	// Revision is status.revision (installation controller).
	Revision *string
	// Upgrade is status.upgrade, owned by the installation controller: it
	// sets Upgrade on every update, with Status nil when no canary upgrade
	// runs (which clears the field).
	Upgrade *Upgrade
	// Dropped are condition types the writer owns and no longer reports:
	// an update that leaves them out removes them, and is written while the
	// resource still has them.
	Dropped []string
	// DerivedFromCurrent, when true, applies the update only to the version
	// of the object it was computed from (its resourceVersion is a
	// precondition): a summary of the other controllers' conditions must not
	// land on a version in which they say something else. A newer version
	// fails the write with a Conflict, and the retry reads it.
	DerivedFromCurrent bool
}

// Window is when the next maintenance window opens.
type Window struct {
	Opens *metav1.Time
}

// Upgrade is the canary upgrade in progress.
type Upgrade struct {
	Status *v1alpha2.UpgradeStatus
}

// Writer applies one controller's status.
type Writer struct {
	client       versioned.Interface
	fieldManager string
	clock        clock.PassiveClock

	written *LastWrites[*v1alpha2.Istio]
}

// NewWriter returns a writer for the named controller.
func NewWriter(client versioned.Interface, controller string, clk clock.PassiveClock) *Writer {
	return &Writer{client: client, fieldManager: FieldManagerPrefix + controller, clock: clk,
		written: NewLastWrites((*v1alpha2.Istio).DeepCopy)}
}

// Newest returns a copy of the cached resource, or of the writer's own last
// write of it while the informer has not delivered that write yet.
func (w *Writer) Newest(cached *v1alpha2.Istio) *v1alpha2.Istio {
	if n := w.written.Newest(cache.MetaObjectToName(cached), cached); n != cached {
		return n // already a copy
	}
	return cached.DeepCopy()
}

// Remember records the controller's write of the resource made other than
// through Apply (its finalizer), so that Newest returns it while the cache
// lags.
func (w *Writer) Remember(istio *v1alpha2.Istio) { w.written.Wrote(istio) }

// Forget drops the memory of a resource, e.g. once it is deleted.
func (w *Writer) Forget(key cache.ObjectName) { w.written.Forget(key) }

// FieldManager is the field manager the writer applies with.
func (w *Writer) FieldManager() string { return w.fieldManager }

// Apply writes the update unless the current object (from a lister, or
// returned by an earlier Apply) already shows it. It returns the object as
// it is now, newer than the lister's until the watch catches up, and
// whether it wrote.
func (w *Writer) Apply(ctx context.Context, current *v1alpha2.Istio, u Update) (*v1alpha2.Istio, bool, error) {
	if UpToDate(current, u) {
		return current, false, nil
	}
	now := metav1.NewTime(w.clock.Now())
	st := istioac.IstioStatus()
	for _, c := range u.Conditions {
		ltt := now
		if old := meta.FindStatusCondition(current.Status.Conditions, c.Type); old != nil && old.Status == c.Status {
			ltt = old.LastTransitionTime
		}
		st.WithConditions(metav1ac.Condition().
			WithType(c.Type).
			WithStatus(c.Status).
			WithReason(c.Reason).
			WithMessage(c.Message).
			WithObservedGeneration(current.Generation).
			WithLastTransitionTime(ltt))
	}
	if u.State != nil {
		st.WithState(*u.State)
	}
	if u.Description != nil {
		st.WithDescription(*u.Description)
	}
	if u.InstalledVersion != nil {
		st.WithInstalledVersion(*u.InstalledVersion)
	}
	if u.Profile != nil {
		st.WithProfile(*u.Profile)
	}
	if u.ObservedGeneration {
		st.WithObservedGeneration(current.Generation)
	}
	if u.Window != nil && u.Window.Opens != nil {
		st.WithNextMaintenanceWindow(*u.Window.Opens)
	}
	if u.Revision != nil {
		st.WithRevision(*u.Revision)
	}
	if u.Upgrade != nil && u.Upgrade.Status != nil {
		up := u.Upgrade.Status
		st.WithUpgrade(istioac.UpgradeStatus().WithPhase(up.Phase).
			WithFrom(istioac.RevisionVersion().WithRevision(up.From.Revision).WithVersion(up.From.Version)).
			WithTo(istioac.RevisionVersion().WithRevision(up.To.Revision).WithVersion(up.To.Version)))
	}
	ac := istioac.Istio(current.Name, current.Namespace).WithStatus(st)
	// Apply against the UID we read, so a status for a deleted and recreated
	// resource of the same name is never written to the new one.
	ac.WithUID(current.UID)
	if u.DerivedFromCurrent {
		ac.WithResourceVersion(current.ResourceVersion)
	}
	updated, err := w.client.OperatorV1alpha2().Istios(current.Namespace).ApplyStatus(ctx, ac,
		metav1.ApplyOptions{FieldManager: w.fieldManager, Force: true})
	if err != nil {
		return current, false, fmt.Errorf("applying status of %s/%s as %s: %w", current.Namespace, current.Name, w.fieldManager, err)
	}
	w.written.Wrote(updated)
	return updated, true, nil
}

// UpToDate reports whether the object's status already matches the update
// at the object's current generation.
func UpToDate(current *v1alpha2.Istio, u Update) bool {
	for _, c := range u.Conditions {
		old := meta.FindStatusCondition(current.Status.Conditions, c.Type)
		if old == nil || old.Status != c.Status || old.Reason != c.Reason || old.Message != c.Message ||
			old.ObservedGeneration != current.Generation {
			return false
		}
	}
	for _, t := range u.Dropped {
		if meta.FindStatusCondition(current.Status.Conditions, t) != nil {
			return false
		}
	}
	s := current.Status
	switch {
	case u.Revision != nil && *u.Revision != s.Revision,
		u.Upgrade != nil && !equality.Semantic.DeepEqual(u.Upgrade.Status, s.Upgrade),
		u.State != nil && *u.State != s.State,
		u.Description != nil && *u.Description != s.Description,
		u.InstalledVersion != nil && *u.InstalledVersion != s.InstalledVersion,
		u.Profile != nil && *u.Profile != s.Profile,
		u.ObservedGeneration && s.ObservedGeneration != current.Generation:
		return false
	}
	if u.Window != nil {
		got, want := s.NextMaintenanceWindow, u.Window.Opens
		if (got == nil) != (want == nil) || (got != nil && !got.Equal(want)) {
			return false
		}
	}
	return true
}
