package podcache

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

func pod(ns, name string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}}
}

// names are the namespace/name of pods, sorted.
func names(t *testing.T, objs []any, err error) []string {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, o := range objs {
		out = append(out, cache.MetaObjectToName(o.(*corev1.Pod)).String())
	}
	slices.Sort(out)
	return out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return cond(), nil
	})
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// The cache holds what its selectors select, the pods of a namespace only
// while it follows it, and each pod once.
func TestCacheHoldsSelectedPodsOnly(t *testing.T) {
	client := fake.NewClientset(
		pod("a", "meshed", map[string]string{"mesh": "yes"}),
		pod("a", "plain", nil),
		pod("b", "meshed", map[string]string{"mesh": "yes", "opt": "in"}),
		pod("b", "optin", map[string]string{"opt": "in"}),
		pod("b", "plain", nil),
		pod("c", "plain", nil),
	)
	c := New(Config{
		Client: client,
		// Overlapping on purpose: b/meshed is selected twice.
		Selectors:         []string{"mesh", "opt"},
		NamespaceSelector: "!mesh,!opt",
		Transform: func(o any) (any, error) {
			p := o.(*corev1.Pod)
			if p.Labels == nil {
				p.Labels = map[string]string{}
			}
			p.Labels["shaped"] = "true"
			return o, nil
		},
	})
	var mu sync.Mutex
	added := map[string]bool{}
	if err := c.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: func(o any) {
		mu.Lock()
		defer mu.Unlock()
		added[cache.MetaObjectToName(o.(*corev1.Pod)).String()] = true
	}}); err != nil {
		t.Fatal(err)
	}
	if c.Follow(map[string]bool{"b": true}) {
		t.Error("Follow before Start reported the namespace synced")
	}
	stop := make(chan struct{})
	defer close(stop)
	c.Start(stop)
	if !c.WaitForCacheSync(stop) {
		t.Fatal("not synced")
	}
	all := func(ns string) []string {
		objs, err := c.ByIndex(cache.NamespaceIndex, ns)
		return names(t, objs, err)
	}
	if got, want := all("a"), []string{"a/meshed"}; !slices.Equal(got, want) {
		t.Errorf("namespace a: %v, want %v (a is not followed)", got, want)
	}
	eventually(t, "namespace b followed and synced", func() bool { return c.Follow(map[string]bool{"b": true}) })
	if got, want := all("b"), []string{"b/meshed", "b/optin", "b/plain"}; !slices.Equal(got, want) {
		t.Errorf("namespace b: %v, want %v", got, want)
	}
	for _, ns := range []string{"a", "b"} {
		objs, _ := c.ByIndex(cache.NamespaceIndex, ns)
		for _, o := range objs {
			if o.(*corev1.Pod).Labels["shaped"] != "true" {
				t.Errorf("%s: not transformed", cache.MetaObjectToName(o.(*corev1.Pod)))
			}
		}
	}
	// The handler added before Start hears of the namespace's pods too.
	eventually(t, "the handler told of b/plain", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return added["b/plain"] && added["a/meshed"] && !added["a/plain"]
	})
	if got := c.Followed(); !slices.Equal(got, []string{"b"}) {
		t.Errorf("followed %v, want [b]", got)
	}

	// Following c instead of b drops b's other pods and lists c's.
	eventually(t, "namespace c followed and synced", func() bool { return c.Follow(map[string]bool{"c": true}) })
	if got, want := all("b"), []string{"b/meshed", "b/optin"}; !slices.Equal(got, want) {
		t.Errorf("namespace b after unfollowing: %v, want %v", got, want)
	}
	if got, want := all("c"), []string{"c/plain"}; !slices.Equal(got, want) {
		t.Errorf("namespace c: %v, want %v", got, want)
	}
	if got := c.Followed(); !slices.Equal(got, []string{"c"}) {
		t.Errorf("followed %v, want [c]", got)
	}
}

// A pod that two informers hold is returned once, by any index.
func TestByIndexReturnsEachPodOnce(t *testing.T) {
	client := fake.NewClientset(pod("a", "both", map[string]string{"x": "1", "y": "1"}))
	c := New(Config{Client: client, Selectors: []string{"x", "y"}, NamespaceSelector: "x",
		Indexers: cache.Indexers{"all": func(any) ([]string, error) { return []string{"all"}, nil }}})
	stop := make(chan struct{})
	defer close(stop)
	c.Start(stop)
	if !c.WaitForCacheSync(stop) {
		t.Fatal("not synced")
	}
	eventually(t, "namespace a synced", func() bool { return c.Follow(map[string]bool{"a": true}) })
	for _, index := range []string{cache.NamespaceIndex, "all"} {
		value := "a"
		if index == "all" {
			value = "all"
		}
		objs, err := c.ByIndex(index, value)
		if got := names(t, objs, err); !slices.Equal(got, []string{"a/both"}) {
			t.Errorf("index %s: %v, want [a/both]", index, got)
		}
	}
}
