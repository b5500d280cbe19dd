package cluster

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// FaultProxy stands between a client and the API server and answers the
// requests Refuse selects with 503 Service Unavailable, as an overloaded or
// restarting API server does; everything else passes through.
type FaultProxy struct {
	// Kubeconfig reaches the API server through the proxy.
	Kubeconfig string

	mu      sync.Mutex
	refuse  func(*http.Request) bool
	refused []string
}

// Refuse sets which requests are refused from now on; nil lets all pass.
func (p *FaultProxy) Refuse(match func(*http.Request) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = match
}

// Refused lists the requests refused so far, as "METHOD path".
func (p *FaultProxy) Refused() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.refused...)
}

func (p *FaultProxy) shouldRefuse(r *http.Request) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.refuse == nil || !p.refuse(r) {
		return false
	}
	p.refused = append(p.refused, r.Method+" "+r.URL.Path)
	return true
}

// NewFaultProxy starts a proxy to the current cluster's API server, as its
// admin, for the rest of the test.
func NewFaultProxy(t *testing.T) *FaultProxy {
	return NewProxy(t, Current().Config, nil)
}

// NewProxy starts a proxy to the current cluster's API server that
// authenticates with cfg (the API server authenticates, authorizes and
// audits every request as cfg's user) and shows observe every response.
func NewProxy(t *testing.T, cfg *rest.Config, observe func(*http.Response)) *FaultProxy {
	t.Helper()
	target, err := url.Parse(Current().Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	transport, err := rest.TransportFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := &FaultProxy{}
	proxy := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport:     transport,
		FlushInterval: -1, // watches stream
	}
	if observe != nil {
		proxy.ModifyResponse = func(resp *http.Response) error {
			observe(resp)
			return nil
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.shouldRefuse(r) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(metav1.Status{
				TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
				Status:   metav1.StatusFailure, Code: http.StatusServiceUnavailable,
				Reason:  metav1.StatusReasonServiceUnavailable,
				Message: fmt.Sprintf("the test's fault proxy refuses %s %s", r.Method, r.URL.Path),
			})
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	kubeconfig := clientcmdapi.NewConfig()
	kubeconfig.Clusters["proxy"] = &clientcmdapi.Cluster{Server: srv.URL}
	kubeconfig.AuthInfos["proxy"] = &clientcmdapi.AuthInfo{}
	kubeconfig.Contexts["proxy"] = &clientcmdapi.Context{Cluster: "proxy", AuthInfo: "proxy"}
	kubeconfig.CurrentContext = "proxy"
	p.Kubeconfig = filepath.Join(t.TempDir(), "kubeconfig.yaml")
	if err := clientcmd.WriteToFile(*kubeconfig, p.Kubeconfig); err != nil {
		t.Fatal(err)
	}
	return p
}
