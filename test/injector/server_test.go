package injector

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/klog/v2/ktesting"
)

func startServer(t *testing.T, source ConfigSource) *Server {
	t.Helper()
	_, ctx := ktesting.NewTestContext(t)
	s, err := Start(ctx, source)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// clientTrusting is an HTTPS client that trusts only the given CA bundle, as
// the API server does with the webhook's caBundle.
func clientTrusting(t *testing.T, caPEM []byte) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("CA bundle holds no certificate")
	}
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}
}

func postReview(t *testing.T, client *http.Client, url string, review *admissionv1.AdmissionReview) *admissionv1.AdmissionReview {
	t.Helper()
	body, err := json.Marshal(review)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP %d: %s", resp.StatusCode, out)
	}
	var got admissionv1.AdmissionReview
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("decoding response %s: %v", out, err)
	}
	return &got
}

func podReview(t *testing.T, uid string, pod *corev1.Pod) (*admissionv1.AdmissionReview, []byte) {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	return &admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID("uid-" + uid),
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: "apps",
			Operation: admissionv1.Create,
			Object:    runtime.RawExtension{Raw: raw},
		},
	}, raw
}

func TestServerAnswersAdmissionReviewOverTLS(t *testing.T) {
	s := startServer(t, Static(DefaultConfig(testImage)))
	u, err := url.Parse(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme != "https" || u.Hostname() != "127.0.0.1" || u.Port() == "" || u.Path != "/inject" {
		t.Fatalf("URL = %s, want https://127.0.0.1:PORT/inject", s.URL())
	}
	client := clientTrusting(t, s.CABundle())

	review, raw := podReview(t, "1", deploymentPod())
	got := postReview(t, client, s.URL(), review)
	if got.Kind != "AdmissionReview" || got.APIVersion != "admission.k8s.io/v1" {
		t.Errorf("response type = %s/%s", got.APIVersion, got.Kind)
	}
	if got.Response == nil || got.Response.UID != review.Request.UID || !got.Response.Allowed {
		t.Fatalf("response = %+v, want allowed with the request's UID", got.Response)
	}
	if got.Response.PatchType == nil || *got.Response.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("patch type = %v", got.Response.PatchType)
	}
	patch, err := jsonpatch.DecodePatch(got.Response.Patch)
	if err != nil {
		t.Fatal(err)
	}
	patched, err := patch.Apply(raw)
	if err != nil {
		t.Fatal(err)
	}
	var pod corev1.Pod
	if err := json.Unmarshal(patched, &pod); err != nil {
		t.Fatal(err)
	}
	proxy := findContainer(pod.Spec.Containers, ProxyContainerName)
	if proxy == nil || proxy.Image != testImage {
		t.Errorf("patched pod's containers = %v", containerNames(pod.Spec.Containers))
	}
	if pod.Annotations["sidecar.istio.io/status"] != statusClassic {
		t.Errorf("status annotation = %q", pod.Annotations["sidecar.istio.io/status"])
	}

	// Requests the stand-in does not handle are allowed unchanged.
	other, _ := podReview(t, "2", deploymentPod())
	other.Request.Operation = admissionv1.Update
	if got := postReview(t, client, s.URL(), other); !got.Response.Allowed || got.Response.Patch != nil {
		t.Errorf("UPDATE response = %+v, want allowed without patch", got.Response)
	}
}

func TestServerCertificateIsItsOwn(t *testing.T) {
	s := startServer(t, Static(DefaultConfig(testImage)))
	other := startServer(t, Static(DefaultConfig(testImage)))
	if bytes.Equal(s.CABundle(), other.CABundle()) {
		t.Fatal("two servers share a CA")
	}
	review, _ := podReview(t, "1", deploymentPod())
	body, _ := json.Marshal(review)
	_, err := clientTrusting(t, other.CABundle()).Post(s.URL(), "application/json", bytes.NewReader(body))
	var unknownAuthority x509.UnknownAuthorityError
	if !errors.As(err, &unknownAuthority) {
		t.Errorf("request trusting another server's CA: err = %v, want an unknown authority error", err)
	}
}

func TestServerRefusesWhenConfigUnavailable(t *testing.T) {
	s := startServer(t, func(context.Context) (Config, error) {
		return Config{}, errors.New("istio-sidecar-injector not found")
	})
	review, _ := podReview(t, "1", deploymentPod())
	got := postReview(t, clientTrusting(t, s.CABundle()), s.URL(), review)
	if got.Response.Allowed || !strings.Contains(got.Response.Result.Message, "istio-sidecar-injector not found") {
		t.Errorf("response = %+v, want a refusal naming the cause", got.Response)
	}
}

func TestServerRejectsGarbage(t *testing.T) {
	s := startServer(t, Static(DefaultConfig(testImage)))
	resp, err := clientTrusting(t, s.CABundle()).Post(s.URL(), "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("HTTP %d for a review without request, want 400", resp.StatusCode)
	}
}

func TestServerStopsWithContext(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	s, err := Start(ctx, Static(DefaultConfig(testImage)))
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-s.served:
	case <-time.After(10 * time.Second):
		t.Fatal("server still serving after its context ended")
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close after the context ended: %v", err)
	}
}

func TestRegisterAndUnregister(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	client := fake.NewClientset()
	s := startServer(t, Static(DefaultConfig(testImage)))

	if err := s.Register(ctx, client); err != nil {
		t.Fatal(err)
	}
	mwc, err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, WebhookConfigurationName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(mwc.Webhooks) != 1 {
		t.Fatalf("webhooks = %d, want 1", len(mwc.Webhooks))
	}
	wh := mwc.Webhooks[0]
	if wh.ClientConfig.URL == nil || *wh.ClientConfig.URL != s.URL() || !bytes.Equal(wh.ClientConfig.CABundle, s.CABundle()) {
		t.Errorf("client config = %+v, want the server's URL and CA", wh.ClientConfig)
	}
	if *wh.FailurePolicy != admissionregistrationv1.Fail || *wh.SideEffects != admissionregistrationv1.SideEffectClassNone ||
		*wh.ReinvocationPolicy != admissionregistrationv1.NeverReinvocationPolicy {
		t.Errorf("policies = %s/%s/%s", *wh.FailurePolicy, *wh.SideEffects, *wh.ReinvocationPolicy)
	}
	if len(wh.AdmissionReviewVersions) != 1 || wh.AdmissionReviewVersions[0] != "v1" {
		t.Errorf("admissionReviewVersions = %v", wh.AdmissionReviewVersions)
	}
	if len(wh.Rules) != 1 || len(wh.Rules[0].Operations) != 1 || wh.Rules[0].Operations[0] != admissionregistrationv1.Create ||
		len(wh.Rules[0].Resources) != 1 || wh.Rules[0].Resources[0] != "pods" {
		t.Errorf("rules = %+v, want pods CREATE", wh.Rules)
	}
	if wh.NamespaceSelector.MatchLabels[NamespaceLabelKey] != NamespaceLabelValue {
		t.Errorf("namespace selector = %+v", wh.NamespaceSelector)
	}
	if e := wh.ObjectSelector.MatchExpressions; len(e) != 1 || e[0].Key != "sidecar.istio.io/inject" ||
		e[0].Operator != metav1.LabelSelectorOpNotIn || len(e[0].Values) != 1 || e[0].Values[0] != "false" {
		t.Errorf("object selector = %+v", wh.ObjectSelector)
	}

	// Registering again updates in place; a second server takes over.
	if err := s.Register(ctx, client); err != nil {
		t.Fatal(err)
	}
	other := startServer(t, Static(DefaultConfig(testImage)))
	if err := other.Register(ctx, client); err != nil {
		t.Fatal(err)
	}
	// The first server no longer owns the configuration and leaves it.
	if err := s.Unregister(ctx, client); err != nil {
		t.Fatal(err)
	}
	mwc, err = client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, WebhookConfigurationName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("configuration of the second server deleted: %v", err)
	}
	if *mwc.Webhooks[0].ClientConfig.URL != other.URL() {
		t.Errorf("URL = %s, want the second server's", *mwc.Webhooks[0].ClientConfig.URL)
	}
	if err := other.Unregister(ctx, client); err != nil {
		t.Fatal(err)
	}
	_, err = client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, WebhookConfigurationName, metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("after Unregister: err = %v, want NotFound", err)
	}
	// Unregistering twice is fine.
	if err := other.Unregister(ctx, client); err != nil {
		t.Error(err)
	}
}
