package istiod

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Router is the cluster network as kube-apiserver sees it: an HTTP CONNECT
// proxy that kube-apiserver's egress selector (egress type "cluster") sends
// every connection to a Service, a webhook above all, through. Connections to
// a routed Service port, named by its ClusterIP (what kube-apiserver dials by
// default) or its DNS name, go to a process on loopback; everything else is
// dialled as asked. This is how Konnectivity carries webhook calls in real
// clusters, so the webhook configurations stay exactly as installed.
type Router struct {
	ln     net.Listener
	server *http.Server

	mu     sync.Mutex
	client kubernetes.Interface
	routes map[servicePort]string
	// clusterIPs caches the ClusterIP of each routed Service; a miss looks
	// the Service up again, so a recreated Service is followed.
	clusterIPs map[servicePort]string
}

type servicePort struct {
	namespace, name string
	port            int
}

func (s servicePort) String() string { return fmt.Sprintf("%s/%s:%d", s.namespace, s.name, s.port) }

// NewRouter listens on a Unix socket at path (created, or replaced if a
// stale one is left) and serves until Close.
func NewRouter(path string) (*Router, error) {
	// sun_path holds 108 bytes, the terminating NUL included.
	if len(path) > 107 {
		return nil, fmt.Errorf("router socket path %s is longer than 107 bytes", path)
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	return ServeRouter(ln), nil
}

// ServeRouter serves a Router on ln until Close.
func ServeRouter(ln net.Listener) *Router {
	r := &Router{ln: ln, routes: map[servicePort]string{}, clusterIPs: map[servicePort]string{}}
	r.server = &http.Server{Handler: http.HandlerFunc(r.serveConnect), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.server.Serve(ln) }()
	return r
}

// EgressSelectorConfiguration is the file kube-apiserver's
// --egress-selector-config-file takes to dial the cluster's Services
// (egress type "cluster": webhooks, aggregated APIs, kubelets) through the
// HTTP CONNECT proxy on the Unix socket at path. (A plain-HTTP TCP proxy
// passes the configuration's validation but crashes kube-apiserver 1.36,
// which loads a TLS configuration for it regardless.)
func EgressSelectorConfiguration(path string) string {
	return fmt.Sprintf(`apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: %s
`, path)
}

// SetClient gives the router the cluster's API to resolve ClusterIPs with.
func (r *Router) SetClient(cs kubernetes.Interface) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.client = cs
}

// Route sends connections to port of Service namespace/name to backend.
func (r *Router) Route(namespace, name string, port int, backend string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.routes[servicePort{namespace, name, port}] = backend
}

// Unroute removes every route of Service namespace/name.
func (r *Router) Unroute(namespace, name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.routes {
		if k.namespace == namespace && k.name == name {
			delete(r.routes, k)
			delete(r.clusterIPs, k)
		}
	}
}

// Close stops serving; tunnels already open end with their connections.
func (r *Router) Close() error { return r.server.Close() }

func (r *Router) serveConnect(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodConnect {
		http.Error(w, "only CONNECT is served", http.StatusMethodNotAllowed)
		return
	}
	target := req.Host
	backend, err := r.resolve(req.Context(), target)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	upstream, err := net.DialTimeout("tcp", backend, 10*time.Second)
	if err != nil {
		http.Error(w, fmt.Sprintf("dialing %s for %s: %v", backend, target, err), http.StatusBadGateway)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		_ = upstream.Close()
		http.Error(w, "connection cannot be hijacked", http.StatusInternalServerError)
		return
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		_ = upstream.Close()
		return
	}
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		_ = conn.Close()
		_ = upstream.Close()
		return
	}
	tunnel(conn, buf.Reader, upstream)
}

// tunnel copies both ways until either side ends, then closes both.
func tunnel(client net.Conn, clientReader *bufio.Reader, upstream net.Conn) {
	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(upstream, clientReader)
		done <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(client, upstream)
		done <- struct{}{}
	}()
	<-done
	_ = client.Close()
	_ = upstream.Close()
	<-done
}

// resolve maps a CONNECT target to the address to dial: the backend of a
// routed Service port, else the target itself.
func (r *Router) resolve(ctx context.Context, target string) (string, error) {
	host, portStr, err := net.SplitHostPort(target)
	if err != nil {
		return "", fmt.Errorf("CONNECT target %q: %w", target, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return "", fmt.Errorf("CONNECT target %q: port: %w", target, err)
	}
	if net.ParseIP(host) == nil {
		if key, ok := serviceFromDNSName(host, port); ok {
			r.mu.Lock()
			backend, routed := r.routes[key]
			r.mu.Unlock()
			if routed {
				return backend, nil
			}
		}
		return target, nil
	}
	if backend, ok := r.byClusterIP(host, port); ok {
		return backend, nil
	}
	r.refreshClusterIPs(ctx, port)
	if backend, ok := r.byClusterIP(host, port); ok {
		return backend, nil
	}
	return target, nil
}

func (r *Router) byClusterIP(ip string, port int) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for key, backend := range r.routes {
		if key.port == port && r.clusterIPs[key] == ip {
			return backend, true
		}
	}
	return "", false
}

// refreshClusterIPs reads the ClusterIP of every Service routed on port.
func (r *Router) refreshClusterIPs(ctx context.Context, port int) {
	r.mu.Lock()
	cs := r.client
	var keys []servicePort
	for key := range r.routes {
		if key.port == port {
			keys = append(keys, key)
		}
	}
	r.mu.Unlock()
	if cs == nil {
		return
	}
	for _, key := range keys {
		svc, err := cs.CoreV1().Services(key.namespace).Get(ctx, key.name, metav1.GetOptions{})
		if err != nil {
			continue
		}
		r.mu.Lock()
		r.clusterIPs[key] = svc.Spec.ClusterIP
		r.mu.Unlock()
	}
}

// serviceFromDNSName parses name.namespace.svc[.cluster.local].
func serviceFromDNSName(host string, port int) (servicePort, bool) {
	host = strings.TrimSuffix(strings.TrimSuffix(host, "."), ".cluster.local")
	parts := strings.Split(host, ".")
	if len(parts) != 3 || parts[2] != "svc" {
		return servicePort{}, false
	}
	return servicePort{namespace: parts[1], name: parts[0], port: port}, true
}
