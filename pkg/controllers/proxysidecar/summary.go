package proxysidecar

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/queue"
	"github.com/meshkeeper/istio-operator/pkg/controllers/status"
	"github.com/meshkeeper/istio-operator/pkg/istioclient"
	"github.com/meshkeeper/istio-operator/pkg/metrics"
)

// maxNamed is how many workloads a condition message names (Kyma's format).
const maxNamed = 5

// syncSummary counts the mesh for the served Istio resource, sets the
// target the workload syncs work towards, enqueues the workloads to restart
// and writes the condition.
func (c *Controller) syncSummary(ctx context.Context, k Key) (queue.Result, error) {
	// Until Istio is installed with the current configuration nothing is
	// restarted: restarting now could give pods the old proxy again. The
	// gate's waiting write carries no status.nextMaintenanceWindow, which
	// clears it: no restart waits for a window then.
	verdict, cached, err := c.gate().Check(ctx, k.ObjectName())
	var t *target
	switch {
	case verdict == status.Proceed:
		proxy, err := c.desiredProxy(cached)
		if err != nil {
			return queue.Result{}, err
		}
		revs := revisionsOf(cached, &proxy)
		t = (&target{istio: k, proxy: proxy, hash: proxy.Hash(), pacing: cached.Spec.EffectiveRestartPacing(c.defaults), revisions: revs}).withWindows(&cached.Spec)
	case verdict == status.Deleting && removingSidecars(cached):
		t = &target{istio: k, removal: true, hash: noSidecar, pacing: cached.Spec.EffectiveRestartPacing(c.defaults),
			revisions: removalRevisions(cached)}
	default:
		c.dropTarget(k)
		return queue.Result{}, err
	}
	for _, w := range c.pacer.configure(t.pacing) {
		c.loop.Add(w) // reserved at the old rate: reserve again at the new one
	}
	if old := c.target.Swap(t); old == nil || old.hash != t.hash {
		if t.removal {
			klog.FromContext(ctx).Info("Istio is uninstalled: removing the sidecars", "pacing", t.pacing)
		} else {
			klog.FromContext(ctx).Info("Desired sidecar proxy", "image", t.proxy.Image, "hash", t.hash, "pacing", t.pacing)
		}
	}

	// A namespace that selects the injector now has its pods cached only
	// from now on: count once they are, or a join would go unseen.
	if synced := c.followSelecting(t); !synced && !t.removal {
		return queue.Result{RequeueAfter: podCacheSyncWait}, nil
	}
	n := c.count(t)
	for _, w := range n.toStart {
		c.loop.Add(w)
	}
	for _, w := range c.pacer.next() {
		c.loop.Add(w)
	}
	c.metrics.Summary(n.outdatedPods, map[string]int{
		metrics.WorkloadWaiting: len(n.waiting), metrics.WorkloadRolling: len(n.rolling),
		metrics.WorkloadBlocked: len(n.blocked) + len(n.platformBlocked), metrics.WorkloadManual: len(n.manual),
		metrics.WorkloadWindow: len(n.held),
	}, map[string]int{metrics.MoveJoin: n.moves[changeJoin], metrics.MoveLeave: n.moves[changeLeave]})

	cond, after := n.condition(t)
	prev := meta.FindStatusCondition(cached.Status.Conditions, v1alpha2.ConditionProxySidecarRestartSucceeded)
	// Every write carries status.nextMaintenanceWindow, set or not: server-side
	// apply would drop it from a write that leaves it out.
	u := status.Update{Conditions: []status.Condition{cond}, Window: n.window()}
	c.metrics.Canary(n.revisions.counts())
	if t.moveTo != "" {
		u.Conditions = append(u.Conditions, n.revisions.condition(t))
	} else {
		u.Dropped = []string{v1alpha2.ConditionProxySidecarsOnRevision}
	}
	if wait := c.progressWait(k, cached, u.Conditions, n); wait > 0 {
		// Only the counts moved, not far or not long enough ago.
		return queue.Result{RequeueAfter: wait}, nil
	}
	_, wrote, err := c.status.Apply(ctx, cached, u)
	if err != nil {
		return queue.Result{}, err
	}
	if wrote && (prev == nil || prev.Reason != cond.Reason) {
		switch cond.Reason {
		case v1alpha2.ReasonProxySidecarManualRestartRequired, v1alpha2.ReasonProxySidecarRestartFailed,
			v1alpha2.ReasonProxySidecarRestartPartiallySucceeded, v1alpha2.ReasonProxySidecarMaintenanceWindowInvalid,
			v1alpha2.ReasonProxySidecarRemovalIncomplete:
			c.recorder.Event(cached, corev1.EventTypeWarning, cond.Reason, cond.Message)
		case v1alpha2.ReasonProxySidecarsRemoved:
			c.recorder.Event(cached, corev1.EventTypeNormal, cond.Reason, cond.Message)
		case v1alpha2.ReasonProxySidecarRestartSucceeded:
			if prev != nil {
				c.recorder.Event(cached, corev1.EventTypeNormal, cond.Reason, cond.Message)
			}
		}
	}
	return queue.Result{RequeueAfter: after}, nil
}

// desiredProxy is DesiredProxy of the resource, resolved with the
// operator's image defaults and the profile installed (which the
// installation controller records in the status with Installed), computed
// once per generation and profile.
func (c *Controller) desiredProxy(istio *v1alpha2.Istio) (istioclient.Proxy, error) {
	profile := istio.Status.Profile
	c.mu.Lock()
	d, ok := c.desired[istio.UID]
	c.mu.Unlock()
	if ok && d.generation == istio.Generation && d.profile == profile {
		return d.proxy, nil
	}
	p, err := istioclient.DesiredProxy(istio.Spec.Resolved(c.images, profile))
	if err != nil {
		return p, err
	}
	c.mu.Lock()
	c.desired = map[types.UID]desiredAt{istio.UID: {generation: istio.Generation, profile: profile, proxy: p}}
	c.mu.Unlock()
	return p, nil
}

// progressMark is the progress last written for a resource.
type progressMark struct {
	at                 time.Time
	restarted, rolling int
	podsOff            int // pods on the revision a canary upgrade leaves
}

// progressWait is how long to hold back a write that changes only the
// counts of in-progress conditions; 0 means write now. The counts are
// written ProgressWriteInterval after the last write once they moved by
// ProgressWriteShare of the wave, and after ProgressQuietInterval however
// little they moved.
func (c *Controller) progressWait(k Key, istio *v1alpha2.Istio, conds []status.Condition, n *census) time.Duration {
	changed, onlyCounts := false, true
	for _, cond := range conds {
		prev := meta.FindStatusCondition(istio.Status.Conditions, cond.Type)
		if prev != nil && prev.Message == cond.Message && prev.Reason == cond.Reason {
			continue
		}
		changed = true
		onlyCounts = onlyCounts && prev != nil && prev.Reason == cond.Reason && prev.Status == cond.Status &&
			prev.ObservedGeneration == istio.Generation && countingReasons[cond.Reason]
	}
	if !changed {
		return 0 // nothing to write
	}
	now := c.clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if last, ok := c.lastProgress[k]; onlyCounts && ok {
		since := now.Sub(last.at)
		if since < ProgressWriteInterval {
			return ProgressWriteInterval - since
		}
		if since < ProgressQuietInterval && !n.movedFrom(last) {
			return min(RollingInterval, ProgressQuietInterval-since)
		}
	}
	c.lastProgress[k] = progressMark{at: now, restarted: n.restarted, rolling: len(n.rolling), podsOff: n.revisions.podsOff}
	return 0
}

// countingReasons are the reasons of conditions in progress, whose
// messages count the work done.
var countingReasons = map[string]bool{
	v1alpha2.ReasonProxySidecarRestartInProgress: true, v1alpha2.ReasonProxySidecarRemovalInProgress: true,
	v1alpha2.ReasonProxySidecarsMoving: true, v1alpha2.ReasonProxySidecarsPinned: true,
}

// movedFrom reports whether the restarted or the rolling workloads moved
// by ProgressWriteShare of the wave's workloads (at least one) since last.
func (n *census) movedFrom(last progressMark) bool {
	step := max(1, int(math.Ceil(ProgressWriteShare*float64(n.workloads()))))
	return abs(n.restarted-last.restarted) >= step || abs(len(n.rolling)-last.rolling) >= step ||
		abs(n.revisions.podsOff-last.podsOff) >= step
}

// workloads are the workloads a wave restarts: restarted onto the target,
// rolling, or still to be restarted.
func (n *census) workloads() int {
	return n.restarted + len(n.rolling) + len(n.waiting) + len(n.held) + len(n.blocked) + len(n.platformBlocked)
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func (c *Controller) dropTarget(k Key) {
	if t := c.target.Load(); t != nil && t.istio == k {
		c.target.CompareAndSwap(t, nil)
	}
}

// census is one count of the mesh against a target.
type census struct {
	outdatedPods int
	restarted    int      // restarted for the target, and on it
	rolling      []Key    // restarted for the target, rolling out
	waiting      []Key    // outdated, not yet restarted, may be restarted now
	blocked      []string // "namespace/name (why)": paused, stuck, still outdated after the restart
	// platformBlocked are the blocked workloads of the platform's own
	// namespaces: an Error, where a customer's is a Warning.
	platformBlocked []string
	manual          []string // "namespace/name" of pods nothing can restart
	excluded        int
	// held are outdated workloads, not yet restarted, that wait for a
	// maintenance window; opens is when the next one opens (zero when none
	// is held, or the windows cannot be read), untilOpens how long that is.
	held       []Key
	opens      time.Time
	untilOpens time.Duration
	// windowsErr says why the maintenance windows cannot be read.
	windowsErr error
	// moves counts the workloads waiting, held, rolling or blocked by what
	// their pods need: joining or leaving the mesh, or a new proxy.
	moves map[change]int
	// toStart are the waiting workloads the pacer does not know yet, the
	// platform's first.
	toStart []Key
	// revisions counts the mesh by revision during a canary upgrade.
	revisions revisionCensus
}

// count groups the pods of the mesh by workload and classifies each
// workload.
func (c *Controller) count(t *target) *census {
	type owner struct {
		key Key
		ok  bool
	}
	groups := map[Key][]*corev1.Pod{}
	byReplicaSet := map[types.UID]owner{} // the pods of one ReplicaSet share a workload
	now := c.clock.Now()
	inWindow := t.inWindow(now)
	n := &census{windowsErr: t.windowsErr, moves: map[change]int{}}
	c.meshPods(t, func(pod *corev1.Pod, ns *corev1.Namespace) {
		if !live(pod) || injected(pod) && t.otherRevision(pod) {
			return // another revision's pods are its control plane's
		}
		move, _ := t.judge(pod, ns)
		if move == changeNone && !injected(pod) {
			return // outside the mesh, and rightly so
		}
		var k Key
		var ok bool
		if ref := metav1.GetControllerOfNoCopy(pod); ref != nil && ref.Kind == string(KindReplicaSet) {
			w, seen := byReplicaSet[ref.UID]
			if !seen {
				w.key, w.ok = workloadOf(pod, c.replicaSets)
				byReplicaSet[ref.UID] = w
			}
			k, ok = w.key, w.ok
		} else {
			k, ok = workloadOf(pod, c.replicaSets)
		}
		n.revisions.note(t, k, pod, ns)
		if !ok {
			if move != changeNone {
				if move == changeProxy {
					n.outdatedPods++
				}
				n.manual = append(n.manual, describe(k, pod))
			}
			return
		}
		groups[k] = append(groups[k], pod)
	})

	for k, pods := range groups {
		w, err := c.getWorkload(k)
		var template map[string]string
		if err == nil && w != nil {
			template = w.template
		}
		j := c.judgePods(t, k.Namespace, template, pods)
		if j.move == changeProxy {
			n.outdatedPods += len(j.stale)
		}
		if err != nil || w == nil {
			if len(j.stale) > 0 {
				n.wait(k, j.move, t.mayRestart(inWindow, j.stale)) // the cache lags; its own sync resolves it
			}
			continue
		}
		if w.key.Kind == KindReplicaSet && w.owner != nil {
			continue // a Deployment's ReplicaSet the cache saw before its owner
		}
		if c.deleting(w) {
			continue
		}
		if c.excluded(w) {
			if len(j.stale) > 0 {
				n.excluded++
			}
			continue
		}
		if t.removal && j.templated {
			// Named, so that the removal does not claim what it cannot do.
			n.block(k, changeLeave, "its pod template carries the sidecar (istioctl kube-inject): remove it there", c.platform[k.Namespace])
			continue
		}
		if w.restartedFor() == j.token {
			// Only pods that still need a restart can show that the
			// restart did not help.
			why := stuck(w, j)
			if why == "" && len(j.stale) > 0 && w.byEviction {
				why = c.evictionBlocked(k, j.token)
			}
			switch {
			case why != "":
				n.block(k, j.move, why, c.platform[k.Namespace])
			case len(j.stale) == 0 && (w.byEviction || w.rollout.Done):
				n.restarted++
				if c.pacer.waiting(k) {
					n.toStart = append(n.toStart, k) // its sync frees the slot
				}
			default:
				c.pacer.rolling(k)
				n.rolling = append(n.rolling, k)
				n.moves[j.move]++
			}
			continue
		}
		if len(j.stale) == 0 {
			continue
		}
		if why := blockedBefore(w); why != "" {
			n.block(k, j.move, why, c.platform[k.Namespace])
			continue
		}
		n.wait(k, j.move, t.mayRestart(inWindow, j.stale))
	}

	sort.Slice(n.waiting, func(i, j int) bool { return c.platformFirst(n.waiting[i], n.waiting[j]) })
	sort.Slice(n.held, func(i, j int) bool { return c.platformFirst(n.held[i], n.held[j]) })
	if len(n.held) > 0 {
		if n.opens = t.nextWindow(now); !n.opens.IsZero() {
			n.untilOpens = n.opens.Sub(now)
		}
	}
	for _, k := range n.waiting {
		if !c.pacer.waiting(k) {
			n.toStart = append(n.toStart, k)
		}
	}
	sort.Strings(n.blocked)
	sort.Strings(n.platformBlocked)
	sort.Strings(n.manual)
	return n
}

// stuck says why a restarted workload cannot finish, or "": its rollout is
// stuck, or pods created after its restart still need one (then restarting
// again would not help: the injector decides otherwise than expected).
func stuck(w *workload, j judgement) string {
	if w.rollout.Failed != "" && !w.byEviction {
		return "rollout stuck: " + w.rollout.Failed
	}
	since := w.restartedAt()
	if since.IsZero() {
		return ""
	}
	// The pod named is the first by name, not by cache order: the message
	// must stay the same from one count to the next, or every count would
	// write the condition anew.
	var first *corev1.Pod
	for _, pod := range j.stale {
		if pod.CreationTimestamp.Time.Before(since) || (first != nil && pod.Name > first.Name) {
			continue
		}
		first = pod
	}
	if first == nil {
		return ""
	}
	switch j.move {
	case changeJoin:
		return fmt.Sprintf("pod %s, created after the restart, has no sidecar: the injector did not inject it", first.Name)
	case changeLeave:
		return fmt.Sprintf("pod %s, created after the restart, still has a sidecar", first.Name)
	}
	return fmt.Sprintf("pod %s, created after the restart, still runs an outdated proxy: %s", first.Name, j.why)
}

// blockedBefore says why an outdated workload must not be restarted now
// and needs the user: it is paused, or its rollout is stuck.
func blockedBefore(w *workload) string {
	switch {
	case w.paused:
		return "paused: resume it to restart its proxies"
	case w.rollout.Failed != "" && !w.byEviction:
		return "rollout stuck: " + w.rollout.Failed
	}
	return ""
}

// describe names an unrestartable pod for the condition message.
func describe(owner Key, pod *corev1.Pod) string {
	if owner.Kind == "Pod" {
		return pod.Namespace + "/" + pod.Name
	}
	return fmt.Sprintf("%s/%s (%s %s)", pod.Namespace, pod.Name, owner.Kind, owner.Name)
}

// wait records an outdated workload not yet restarted: one that may be
// restarted now waits its turn, any other waits for a maintenance window.
func (n *census) wait(k Key, move change, now bool) {
	n.moves[move]++
	if now {
		n.waiting = append(n.waiting, k)
		return
	}
	n.held = append(n.held, k)
}

// window is status.nextMaintenanceWindow for the count: when the next
// window opens while workloads wait for one, to the second the API keeps.
func (n *census) window() *status.Window {
	if n.opens.IsZero() {
		return &status.Window{}
	}
	return &status.Window{Opens: ptr.To(metav1.NewTime(n.opens.Truncate(time.Second)))}
}

// block records a workload that cannot be restarted now, and why.
func (n *census) block(k Key, move change, why string, platform bool) {
	n.moves[move]++
	entry := fmt.Sprintf("%s/%s (%s)", k.Namespace, k.Name, why)
	if platform {
		n.platformBlocked = append(n.platformBlocked, entry)
		return
	}
	n.blocked = append(n.blocked, entry)
}

// platformFirst orders the platform's own workloads before the customers',
// then by namespace and name.
func (c *Controller) platformFirst(a, b Key) bool {
	if ak, bk := c.platform[a.Namespace], c.platform[b.Namespace]; ak != bk {
		return ak
	}
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}

// condition is the ProxySidecarRestartSucceeded condition for the count,
// and when to count again. The first reason that applies wins: maintenance
// windows that cannot be read (nothing restarts until the spec is
// corrected), restarts in progress, blocked platform workloads, blocked
// customer workloads, pods that need a manual restart, workloads waiting
// for a maintenance window, success. Waiting for a window is planned work,
// so every reason that needs the user wins over it, as the Ready summary
// ranks an Error or a Warning over Processing; under every reason the
// message counts the workloads waiting for a window and names its opening.
func (n *census) condition(t *target) (cond status.Condition, after time.Duration) {
	defer func() {
		if n.untilOpens > 0 {
			after = min(after, n.untilOpens) // back when the window opens
		}
	}()
	cond = status.Condition{Type: v1alpha2.ConditionProxySidecarRestartSucceeded}
	total := n.workloads()
	progress := fmt.Sprintf("%d of %d workloads restarted, %d waiting, %d need manual restart",
		n.restarted, total, len(n.waiting)+len(n.held), len(n.manual))
	var extra []string
	if len(n.rolling) > 0 {
		extra = append(extra, fmt.Sprintf("%d rolling out", len(n.rolling)))
	}
	if j := n.moves[changeJoin]; j > 0 {
		extra = append(extra, fmt.Sprintf("%d joining the mesh", j))
	}
	if l := n.moves[changeLeave]; l > 0 {
		extra = append(extra, fmt.Sprintf("%d leaving the mesh", l))
	}
	if !n.opens.IsZero() {
		extra = append(extra, fmt.Sprintf("%d wait for the maintenance window that opens at %s", len(n.held), n.opens.Format(time.RFC3339)))
	}
	if len(n.platformBlocked) > 0 {
		extra = append(extra, "platform workloads blocked: "+named(n.platformBlocked))
	}
	if len(n.blocked) > 0 {
		extra = append(extra, "blocked: "+named(n.blocked))
	}
	if n.excluded > 0 {
		extra = append(extra, fmt.Sprintf("%d excluded by annotation %s", n.excluded, AnnotationExclude))
	}
	if len(extra) > 0 {
		progress += " (" + strings.Join(extra, "; ") + ")"
	}
	if t.removal {
		return n.removalCondition(progress)
	}
	switch {
	case n.windowsErr != nil:
		cond.Status, cond.Reason = metav1.ConditionFalse, v1alpha2.ReasonProxySidecarMaintenanceWindowInvalid
		cond.Message = fmt.Sprintf("No workload is restarted onto proxy %s until the maintenance windows are corrected: %v (%s).",
			t.proxy.Image, n.windowsErr, progress)
		return cond, AttentionInterval
	case len(n.rolling)+len(n.waiting) > 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, v1alpha2.ReasonProxySidecarRestartInProgress
		cond.Message = fmt.Sprintf("Restarting workloads onto proxy %s: %s.", t.proxy.Image, progress)
		return cond, RollingInterval
	case len(n.platformBlocked) > 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, v1alpha2.ReasonProxySidecarRestartFailed
		cond.Message = fmt.Sprintf("Workloads of the platform's own namespaces cannot be restarted onto proxy %s: %s. Resolve what blocks them; the operator then restarts them.",
			t.proxy.Image, progress)
		return cond, AttentionInterval
	case len(n.blocked) > 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, v1alpha2.ReasonProxySidecarRestartPartiallySucceeded
		cond.Message = fmt.Sprintf("Some customer workloads cannot be restarted onto proxy %s: %s. Resolve what blocks them; the operator then restarts them.",
			t.proxy.Image, progress)
		return cond, AttentionInterval
	case len(n.manual) > 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, v1alpha2.ReasonProxySidecarManualRestartRequired
		cond.Message = fmt.Sprintf("The sidecars of the following workloads could not be restarted: %s. Recreate these pods to give them proxy %s (%s).",
			named(n.manual), t.proxy.Image, progress)
		return cond, AttentionInterval
	case len(n.held) > 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, v1alpha2.ReasonProxySidecarRestartWaitingForWindow
		cond.Message = fmt.Sprintf("Restarts onto proxy %s wait for a maintenance window: %s.", t.proxy.Image, progress)
		return cond, WindowWaitInterval
	}
	cond.Status, cond.Reason = metav1.ConditionTrue, v1alpha2.ReasonProxySidecarRestartSucceeded
	cond.Message = fmt.Sprintf("Every injected workload runs proxy %s: %s.", t.proxy.Image, progress)
	return cond, ConvergedInterval
}

// named lists up to maxNamed entries and counts the rest, as Kyma does.
func named(list []string) string {
	if len(list) <= maxNamed {
		return strings.Join(list, ", ")
	}
	return fmt.Sprintf("%s and %d additional workload(s)", strings.Join(list[:maxNamed], ", "), len(list)-maxNamed)
}

// gate decides whether a sync may act on a resource yet.
func (c *Controller) gate() *status.Gate {
	return &status.Gate{Istios: c.istios, Writer: c.status, Conditions: []string{v1alpha2.ConditionProxySidecarRestartSucceeded},
		Then: "Sidecar proxies that need it are restarted once Installed is True."}
}
