// Package injector is TEST SCAFFOLDING. It stands in for istiod's sidecar
// injector on the local kwok-simulated clusters the operator is tested and
// developed against, where no container ever runs: the real injector webhook
// points at the istiod Service, which nothing serves there, so pods that
// Istio's webhook selects cannot be created at all.
//
// The stand-in is a mutating admission webhook served by the test process (or
// by hack/injector-standin for `make run`) over HTTPS on 127.0.0.1, with its
// own freshly generated CA in the webhook's caBundle. It selects only pods in
// namespaces labelled NamespaceLabelKey=NamespaceLabelValue (and never pods
// labelled sidecar.istio.io/inject=false), and injects what the installed
// Istio 1.31 would inject for the fields an operator compares: the
// istio-proxy container (or native sidecar init container) with its image and
// resources, the istio-init or istio-validation init container, the injected
// volumes, the sidecar.istio.io/status annotation, the labels and
// annotations Istio's injection template sets, and the rewriting of the
// application's probes to the agent. The injected containers' environment
// variables, probes and lifecycle hooks, and most per-pod tuning annotations,
// are not reproduced; see Config and inject for the rules followed.
//
// Production never uses this package: in a real cluster istiod injects
// sidecars itself. Nothing outside tests and development tooling may import it.
package injector
