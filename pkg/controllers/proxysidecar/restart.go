package proxysidecar

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
	"github.com/meshkeeper/istio-operator/pkg/controllers/queue"
	"github.com/meshkeeper/istio-operator/pkg/controllers/status"
	"github.com/meshkeeper/istio-operator/pkg/metrics"
)

// syncWorkload restarts one workload if its pods run an outdated proxy, at
// most once per target, and follows the restart until its pods are current.
func (c *Controller) syncWorkload(ctx context.Context, k Key) (queue.Result, error) {
	t := c.target.Load()
	if t == nil {
		c.release(k)
		return queue.Result{}, nil
	}
	w, err := c.getWorkload(k)
	if err != nil {
		return queue.Result{}, err
	}
	if w == nil {
		c.forgetEvictions(k)
		c.release(k)
		return queue.Result{}, nil
	}
	if w.owner != nil {
		// A Deployment's ReplicaSet: the Deployment is the workload.
		c.release(k)
		if w.owner.Kind == string(KindDeployment) {
			c.loop.Add(Key{Kind: KindDeployment, Namespace: k.Namespace, Name: w.owner.Name})
		}
		return queue.Result{}, nil
	}
	if c.excluded(w) || c.deleting(w) {
		c.forgetEvictions(k)
		c.release(k)
		return queue.Result{}, nil
	}

	pods := c.podsOf(k)
	j := c.judgePods(t, k.Namespace, w.template, pods)
	stale := j.stale

	if w.restartedFor() == j.token {
		return c.follow(ctx, w, t, pods, j)
	}
	if len(stale) == 0 || blockedBefore(w) != "" {
		c.release(k) // the summary reports a blocked workload
		return queue.Result{}, nil
	}
	// Outside the maintenance windows it waits, without a slot. A wait for
	// a slot or a token ends in a new sync, which checks the window again.
	if c.heldByWindow(t, k, stale) {
		return queue.Result{}, nil
	}
	if !w.byEviction && !w.rollout.Done {
		// Someone else's rollout is in progress; restarting now would roll
		// twice. Its pods may get the new proxy on their own.
		return queue.Result{RequeueAfter: RollingInterval}, nil
	}
	if j.token != noSidecar && !c.injector.serves(ctx, t) {
		// Restarted now, its pods would get the old proxy again, or none.
		return queue.Result{RequeueAfter: InjectorRecheckInterval}, nil
	}
	if !c.pacer.acquire(k) {
		return queue.Result{}, nil // in line; woken when a slot frees
	}
	if wait := c.pacer.reserve(k, c.clock.Now()); wait > 0 {
		// The token is reserved for k; the worker moves on.
		return queue.Result{RequeueAfter: wait}, nil
	}
	if now := c.target.Load(); now == nil || now.hash != t.hash || now.removal != t.removal {
		c.release(k)
		c.loop.Add(k)
		return queue.Result{}, nil
	}

	reason := j.why
	if err := c.markRestarted(ctx, w, j.token, reason); err != nil {
		if apierrors.IsConflict(err) {
			// The cache is behind the workload, perhaps behind our own
			// restart of it: the retry sees the newer version.
			c.release(k)
			return queue.Result{}, err
		}
		c.metrics.Restart(string(k.Kind), metrics.RestartFailed)
		c.recorder.Eventf(w.obj, corev1.EventTypeWarning, v1alpha2.ReasonProxySidecarRestartFailed, "Restarting for the new sidecar proxy failed: %v", err)
		c.release(k)
		return queue.Result{}, err
	}
	klog.FromContext(ctx).Info("Restarted workload for its sidecar proxy", "workload", k, "pods", len(stale), "move", j.move, "reason", reason)
	c.restartEvent(w, t, j, len(pods))
	c.metrics.Restart(string(k.Kind), metrics.RestartIssued)
	return queue.Result{RequeueAfter: WorkloadRecheckInterval}, nil
}

// restartEvent records who restarted a workload and why, within the
// budget of Events on restarted workloads.
func (c *Controller) restartEvent(w *workload, t *target, j judgement, pods int) {
	ok, firstOver := c.restartEvents.allow(c.clock.Now(), j.token)
	if ok {
		var what string
		switch j.move {
		case changeJoin:
			what = fmt.Sprintf("%d of %d pods have no sidecar proxy: %s; their new pods get proxy %s", len(j.stale), pods, j.why, t.proxy.Image)
		case changeLeave:
			what = fmt.Sprintf("%d of %d pods have a sidecar proxy they should not have: %s; their new pods have none", len(j.stale), pods, j.why)
		default:
			what = fmt.Sprintf("%d of %d pods run an outdated sidecar proxy (%s); the desired proxy is %s", len(j.stale), pods, j.why, t.proxy.Image)
		}
		c.recorder.Eventf(w.obj, corev1.EventTypeNormal, v1alpha2.EventProxySidecarRestarted, "istio-operator restarted %s %s: %s.", w.key.Kind, w.key.Name, what)
		return
	}
	if !firstOver {
		return
	}
	if istio, err := c.istios.Istios(t.istio.Namespace).Get(t.istio.Name); err == nil {
		b := c.restartEvents.budget
		c.recorder.Eventf(istio, corev1.EventTypeNormal, v1alpha2.EventProxySidecarRestartEventsLimited,
			"More than %d workloads restarted at once: further Events on restarted workloads are limited to %g per second. "+
				"Each restarted workload records the restart in its pod-template annotations %s and %s.",
			b.Burst, b.PerSecond, AnnotationRestartedAt, AnnotationRestartedReason)
	}
}

// follow watches a workload restarted for the target: a rollout until it
// is done, or the evictions one pod at a time.
func (c *Controller) follow(ctx context.Context, w *workload, t *target, pods []*corev1.Pod, j judgement) (queue.Result, error) {
	k := w.key
	stale := j.stale
	if why := stuck(w, j); why != "" {
		c.release(k)
		return queue.Result{}, nil // blocked: the summary reports it
	}
	if !w.byEviction {
		if !w.rollout.Done || len(stale) > 0 {
			c.pacer.rolling(k)
			return queue.Result{RequeueAfter: WorkloadRecheckInterval}, nil
		}
		c.finish(k, w)
		return queue.Result{}, nil
	}
	if len(stale) == 0 {
		c.finish(k, w)
		return queue.Result{}, nil
	}
	now := c.clock.Now()
	if r := c.refusalOf(k, j.token); r != nil && r.blocked {
		// Reported blocked, its slot given up: try again now and then.
		if wait := r.lastTry.Add(EvictionBlockedInterval).Sub(now); wait > 0 {
			return queue.Result{RequeueAfter: wait}, nil
		}
	} else {
		c.pacer.rolling(k)
	}
	for _, pod := range pods {
		if pod.DeletionTimestamp != nil || c.evictedEarlier(k, pod) {
			// Going, or evicted and the cache has not seen it go yet: a
			// second eviction now would take two pods at once.
			return queue.Result{RequeueAfter: RollingInterval}, nil
		}
	}
	// The workload's status lags behind an eviction when the pod is gone
	// before its controller recounts; the pods in the cache do not.
	if w.ready < w.desired || readyPods(pods) < w.desired {
		return queue.Result{RequeueAfter: RollingInterval}, nil
	}
	// Oldest first, one at a time: the next goes once the replacement is ready.
	sort.Slice(stale, func(i, j int) bool {
		a, b := stale[i].CreationTimestamp, stale[j].CreationTimestamp
		if a.Equal(&b) {
			return stale[i].Name < stale[j].Name
		}
		return a.Before(&b)
	})
	pod := stale[0]
	err := c.kube.PolicyV1().Evictions(pod.Namespace).Evict(ctx, &policyv1.Eviction{
		ObjectMeta:    metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace},
		DeleteOptions: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pod.UID}},
	})
	switch {
	case err == nil, apierrors.IsNotFound(err), apierrors.IsConflict(err):
		klog.FromContext(ctx).V(2).Info("Evicted pod for its sidecar proxy", "workload", k, "pod", pod.Name)
		c.evicted(k, pod.UID)
		return queue.Result{RequeueAfter: RollingInterval}, nil
	case apierrors.IsTooManyRequests(err) && apierrors.HasStatusCause(err, policyv1.DisruptionBudgetCause):
		// A PodDisruptionBudget says not now.
		r, nowBlocked := c.refused(k, j.token, pod.Name, now)
		if nowBlocked {
			klog.FromContext(ctx).Info("Eviction refused by a PodDisruptionBudget for too long, reporting the workload blocked",
				"workload", k, "pod", pod.Name, "since", r.since)
			c.recorder.Eventf(w.obj, corev1.EventTypeWarning, v1alpha2.EventProxySidecarEvictionBlocked,
				"Evicting pod %s (%s) has been refused by a PodDisruptionBudget since %s. "+
					"The other workloads go on; the operator tries again every %v. Allow a disruption, or delete the pod yourself.",
				pod.Name, j.why, r.since.UTC().Format(time.RFC3339), EvictionBlockedInterval)
			c.release(k)
			c.loop.Add(t.istio) // the summary names it
		}
		if r.blocked {
			return queue.Result{RequeueAfter: EvictionBlockedInterval}, nil
		}
		return queue.Result{RequeueAfter: EvictionRetryInterval}, nil
	case apierrors.IsTooManyRequests(err):
		// The API server's own throttling, not a budget.
		return queue.Result{RequeueAfter: EvictionRetryInterval}, nil
	default:
		c.metrics.Restart(string(k.Kind), metrics.RestartFailed)
		return queue.Result{}, fmt.Errorf("evicting pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
}

// readyPods counts the live pods whose Ready condition is true.
func readyPods(pods []*corev1.Pod) int32 {
	var n int32
	for _, pod := range pods {
		if !live(pod) {
			continue
		}
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				n++
			}
		}
	}
	return n
}

// refusal tracks a workload whose evictions a PodDisruptionBudget refuses.
// It lives in memory only: after an operator restart a blocked workload
// takes a slot again and is reported blocked after another
// EvictionBlockedAfter.
type refusal struct {
	hash    string    // the target the evictions are for
	pod     string    // the pod last refused
	since   time.Time // the first refusal since the last successful eviction
	lastTry time.Time
	blocked bool
}

// refused records a refused eviction of pod at now and reports whether it
// made the workload blocked.
func (c *Controller) refused(k Key, hash, pod string, now time.Time) (r refusal, nowBlocked bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refusals == nil {
		c.refusals = map[Key]*refusal{}
	}
	cur := c.refusals[k]
	if cur == nil || cur.hash != hash {
		cur = &refusal{hash: hash, since: now}
		c.refusals[k] = cur
	}
	cur.pod, cur.lastTry = pod, now
	if !cur.blocked && now.Sub(cur.since) >= EvictionBlockedAfter {
		cur.blocked, nowBlocked = true, true
	}
	return *cur, nowBlocked
}

// refusalOf is k's refusal for the target hash, nil if none.
func (c *Controller) refusalOf(k Key, hash string) *refusal {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r := c.refusals[k]; r != nil && r.hash == hash {
		cp := *r
		return &cp
	}
	return nil
}

// evicted records that pod uid of k was evicted: a successful eviction ends
// any refusal, and the next eviction waits until the cache has seen the pod
// go.
func (c *Controller) evicted(k Key, uid types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.refusals, k)
	c.lastEvicted[k] = uid
}

// evictedEarlier reports whether pod is k's last evicted pod, still in the
// cache without its deletion.
func (c *Controller) evictedEarlier(k Key, pod *corev1.Pod) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastEvicted[k] == pod.UID
}

// forgetEvictions drops what is remembered of k's evictions.
func (c *Controller) forgetEvictions(k Key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.refusals, k)
	delete(c.lastEvicted, k)
}

// evictionBlocked says why a workload restarted for the target is blocked
// on a PodDisruptionBudget, or "". The text names no time, so that the
// condition it goes into does not change while nothing does.
func (c *Controller) evictionBlocked(k Key, hash string) string {
	r := c.refusalOf(k, hash)
	if r == nil || !r.blocked {
		return ""
	}
	return fmt.Sprintf("eviction of pod %s refused by a PodDisruptionBudget for more than %v: allow a disruption or delete the pod", r.pod, EvictionBlockedAfter)
}

// markRestarted writes the restart annotations: on the pod template, which
// rolls the workload, or on the workload itself for eviction kinds. The
// patch requires the cached resourceVersion: a cache that has not seen an
// earlier restart yet must not restart the workload a second time.
func (c *Controller) markRestarted(ctx context.Context, w *workload, hash, reason string) error {
	ann := map[string]any{
		AnnotationRestartedFor:    hash,
		AnnotationRestartedAt:     c.clock.Now().UTC().Format(time.RFC3339),
		AnnotationRestartedReason: reason,
	}
	meta := map[string]any{"resourceVersion": w.obj.GetResourceVersion()}
	patch := map[string]any{"metadata": meta}
	if w.byEviction {
		meta["annotations"] = ann
	} else {
		patch["spec"] = map[string]any{"template": map[string]any{"metadata": map[string]any{"annotations": ann}}}
	}
	body, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	k := w.key
	opts := metav1.PatchOptions{FieldManager: status.FieldManagerPrefix + Name}
	switch k.Kind {
	case KindDeployment:
		_, err = c.kube.AppsV1().Deployments(k.Namespace).Patch(ctx, k.Name, types.MergePatchType, body, opts)
	case KindStatefulSet:
		_, err = c.kube.AppsV1().StatefulSets(k.Namespace).Patch(ctx, k.Name, types.MergePatchType, body, opts)
	case KindDaemonSet:
		_, err = c.kube.AppsV1().DaemonSets(k.Namespace).Patch(ctx, k.Name, types.MergePatchType, body, opts)
	case KindReplicaSet:
		_, err = c.kube.AppsV1().ReplicaSets(k.Namespace).Patch(ctx, k.Name, types.MergePatchType, body, opts)
	case KindReplicationController:
		_, err = c.kube.CoreV1().ReplicationControllers(k.Namespace).Patch(ctx, k.Name, types.MergePatchType, body, opts)
	default:
		return fmt.Errorf("cannot restart a %s", k.Kind)
	}
	return err
}

// finish records a completed restart and hands its slot on.
func (c *Controller) finish(k Key, w *workload) {
	c.forgetEvictions(k)
	if c.pacer.waiting(k) {
		if at := w.restartedAt(); !at.IsZero() {
			c.metrics.Restarted(string(k.Kind), c.clock.Since(at))
		}
	}
	c.release(k)
}

// release frees k's pacing slot and wakes the workloads in line.
func (c *Controller) release(k Key) {
	for _, next := range c.pacer.done(k, c.clock.Now()) {
		c.loop.Add(next)
	}
}
