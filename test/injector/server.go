package injector

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"istio.io/api/annotation"
	"istio.io/api/label"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

const (
	// WebhookConfigurationName names the MutatingWebhookConfiguration that
	// Register creates.
	WebhookConfigurationName = "istio-operator-injector-standin"
	// NamespaceLabelKey and NamespaceLabelValue select the namespaces whose
	// new pods the stand-in injects. Istio's own selectors
	// (istio-injection=enabled, istio.io/rev) must not be used on a cluster
	// where istiod does not run: its webhook would fail those pods.
	NamespaceLabelKey   = "meshkeeper.io/injector-standin"
	NamespaceLabelValue = "enabled"

	webhookName = "injector-standin.meshkeeper.io"
	injectPath  = "/inject"

	// maxRequestBytes is Istio's limit on an admission request body.
	maxRequestBytes = 6 << 20
	// webhookTimeoutSeconds bounds each admission call, including the
	// per-request read of the cluster's configuration.
	webhookTimeoutSeconds = 10
)

// Server is a running stand-in injector webhook.
type Server struct {
	source   ConfigSource
	caPEM    []byte
	url      string
	http     *http.Server
	served   chan struct{}
	closeErr error
	once     sync.Once

	mu   sync.Mutex
	stop func() bool // unregisters the close-on-context-end callback
}

// Start serves the stand-in on a free port of 127.0.0.1 over HTTPS, with a
// certificate from a CA generated for this server alone. The server stops
// when ctx ends or Close is called. It injects nothing until Register points
// the API server at it.
func Start(ctx context.Context, source ConfigSource) (*Server, error) {
	if source == nil {
		return nil, errors.New("injector: nil ConfigSource")
	}
	caPEM, serving, err := newServingCertificate(time.Now())
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("injector: listening on loopback: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port

	s := &Server{
		source: source,
		caPEM:  caPEM,
		url:    "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) + injectPath,
		served: make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+injectPath, s.serveInject)
	s.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		// Requests keep the caller's logger but not its cancellation:
		// shutting down is Close's job.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		// TLS handshake failures (say, a caBundle the API server rejects)
		// go to the caller's logger rather than the process's stderr.
		ErrorLog: log.New(logWriter{klog.FromContext(ctx)}, "", 0),
	}
	tlsLn := tls.NewListener(ln, &tls.Config{
		Certificates: []tls.Certificate{serving},
		MinVersion:   tls.VersionTLS12,
	})
	go func() {
		defer close(s.served)
		if err := s.http.Serve(tlsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.FromContext(ctx).Error(err, "Injector stand-in stopped serving")
		}
	}()
	s.mu.Lock()
	s.stop = context.AfterFunc(ctx, func() { _ = s.Close() })
	s.mu.Unlock()
	klog.FromContext(ctx).V(2).Info("Injector stand-in serving", "url", s.url)
	return s, nil
}

// URL is the webhook endpoint, https://127.0.0.1:PORT/inject.
func (s *Server) URL() string { return s.url }

// CABundle is the PEM of the CA that signed the serving certificate.
func (s *Server) CABundle() []byte { return append([]byte(nil), s.caPEM...) }

// Close stops serving. It does not remove the webhook configuration; call
// Unregister first, or the API server will keep calling a dead endpoint and
// (failurePolicy Fail) refuse pods in labelled namespaces.
func (s *Server) Close() error {
	s.once.Do(func() {
		s.mu.Lock()
		stop := s.stop
		s.mu.Unlock()
		if stop != nil {
			stop()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.http.Shutdown(ctx); err != nil {
			s.closeErr = errors.Join(err, s.http.Close())
		}
		<-s.served
	})
	return s.closeErr
}

// webhookConfiguration is the MutatingWebhookConfiguration pointing at s.
func (s *Server) webhookConfiguration() *admissionregistrationv1.MutatingWebhookConfiguration {
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{
			Name: WebhookConfigurationName,
			Labels: map[string]string{
				"app.kubernetes.io/name":    "injector-standin",
				"app.kubernetes.io/part-of": "istio-operator-tests",
			},
		},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name: webhookName,
			ClientConfig: admissionregistrationv1.WebhookClientConfig{
				URL:      ptr.To(s.url),
				CABundle: s.CABundle(),
			},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{
					APIGroups:   []string{""},
					APIVersions: []string{"v1"},
					Resources:   []string{"pods"},
				},
			}},
			FailurePolicy:      ptr.To(admissionregistrationv1.Fail),
			SideEffects:        ptr.To(admissionregistrationv1.SideEffectClassNone),
			ReinvocationPolicy: ptr.To(admissionregistrationv1.NeverReinvocationPolicy),
			TimeoutSeconds:     ptr.To(int32(webhookTimeoutSeconds)),
			NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{NamespaceLabelKey: NamespaceLabelValue},
			},
			ObjectSelector: &metav1.LabelSelector{
				MatchExpressions: []metav1.LabelSelectorRequirement{{
					Key:      label.SidecarInject.Name,
					Operator: metav1.LabelSelectorOpNotIn,
					Values:   []string{"false"},
				}},
			},
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
}

// Register creates, or takes over, the MutatingWebhookConfiguration
// WebhookConfigurationName so that the API server sends pod creations in
// labelled namespaces to s. The API server picks the change up
// asynchronously; WaitUntilActive tells when it has.
func (s *Server) Register(ctx context.Context, client kubernetes.Interface) error {
	want := s.webhookConfiguration()
	api := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	retriable := func(err error) bool { return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) }
	err := retry.OnError(retry.DefaultRetry, retriable, func() error {
		cur, err := api.Get(ctx, want.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = api.Create(ctx, want, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		cur.Labels = want.Labels
		cur.Webhooks = want.Webhooks
		_, err = api.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("registering MutatingWebhookConfiguration %s: %w", want.Name, err)
	}
	klog.FromContext(ctx).V(2).Info("Registered injector stand-in", "webhookConfiguration", want.Name, "url", s.url)
	return nil
}

// Unregister deletes the MutatingWebhookConfiguration if it still points at
// s; one that another stand-in has taken over since is left alone.
func (s *Server) Unregister(ctx context.Context, client kubernetes.Interface) error {
	api := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	cur, err := api.Get(ctx, WebhookConfigurationName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("unregistering injector stand-in: %w", err)
	}
	if !s.owns(cur) {
		return nil
	}
	err = api.Delete(ctx, WebhookConfigurationName, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &cur.UID, ResourceVersion: &cur.ResourceVersion},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("unregistering injector stand-in: %w", err)
	}
	return nil
}

func (s *Server) owns(mwc *admissionregistrationv1.MutatingWebhookConfiguration) bool {
	for _, wh := range mwc.Webhooks {
		if wh.ClientConfig.URL != nil && *wh.ClientConfig.URL == s.url {
			return true
		}
	}
	return false
}

// WaitUntilActive blocks until the API server sends pod creations in
// namespace (which must carry NamespaceLabelKey=NamespaceLabelValue) to s,
// probing with server-side dry-run pod creations. Pods created before that
// are not injected, since the API server loads webhook configurations
// asynchronously.
func (s *Server) WaitUntilActive(ctx context.Context, client kubernetes.Interface, namespace string) error {
	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "injector-standin-probe-", Namespace: namespace},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "probe", Image: "registry.invalid/probe:0"}},
		},
	}
	var lastErr error
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		// Errors are expected for a while: a fresh namespace may not have its
		// default ServiceAccount yet.
		got, err := client.CoreV1().Pods(namespace).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			lastErr = err
			return false, nil
		}
		_, injected := got.Annotations[annotation.SidecarStatus.Name]
		return injected, nil
	})
	if err != nil {
		if lastErr != nil {
			err = fmt.Errorf("%w (last probe error: %v)", err, lastErr)
		}
		return fmt.Errorf("waiting for the injector stand-in to be called in namespace %s: %w", namespace, err)
	}
	return nil
}

func (s *Server) serveInject(w http.ResponseWriter, r *http.Request) {
	logger := klog.FromContext(r.Context())
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBytes))
	if err != nil {
		http.Error(w, "reading request: "+err.Error(), http.StatusBadRequest)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		http.Error(w, "expected an admission.k8s.io/v1 AdmissionReview request", http.StatusBadRequest)
		return
	}
	review.Response = s.admit(r.Context(), logger, review.Request)
	review.Response.UID = review.Request.UID
	review.Request = nil
	out, err := json.Marshal(review)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

func (s *Server) admit(ctx context.Context, logger klog.Logger, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	allow := &admissionv1.AdmissionResponse{Allowed: true}
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.Operation != admissionv1.Create {
		return allow
	}
	deny := func(err error) *admissionv1.AdmissionResponse {
		logger.Info("Injector stand-in refused pod", "namespace", req.Namespace, "err", err)
		return &admissionv1.AdmissionResponse{Result: &metav1.Status{
			Status:  metav1.StatusFailure,
			Message: "injector stand-in: " + err.Error(),
		}}
	}

	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return deny(fmt.Errorf("decoding pod: %w", err))
	}
	pod.ManagedFields = nil
	if pod.Namespace == "" {
		pod.Namespace = req.Namespace
	}
	podRef := klog.KRef(pod.Namespace, firstNonEmpty(pod.Name, pod.GenerateName+"*"))
	if !injectionRequired(&pod) {
		logger.V(4).Info("Injector stand-in skipped pod", "pod", podRef)
		return allow
	}
	cfg, err := s.source(ctx)
	if err != nil {
		return deny(fmt.Errorf("resolving what to inject: %w", err))
	}
	injected, err := inject(&pod, cfg)
	if err != nil {
		return deny(err)
	}
	patch, err := createPatch(&pod, injected)
	if err != nil {
		return deny(err)
	}
	logger.V(2).Info("Injector stand-in injected pod", "pod", podRef, "image", proxyImageOf(injected))
	return &admissionv1.AdmissionResponse{
		Allowed:   true,
		Patch:     patch,
		PatchType: ptr.To(admissionv1.PatchTypeJSONPatch),
	}
}

// logWriter feeds net/http's error log into a klog logger.
type logWriter struct{ logger klog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.logger.V(2).Info("Injector stand-in HTTP server", "msg", strings.TrimSpace(string(p)))
	return len(p), nil
}

func proxyImageOf(pod *corev1.Pod) string {
	if c := findContainer(pod.Spec.Containers, ProxyContainerName); c != nil {
		return c.Image
	}
	if c := findContainer(pod.Spec.InitContainers, ProxyContainerName); c != nil {
		return c.Image
	}
	return ""
}
