// Command injector-standin is DEVELOPMENT TOOLING for the local kwok cluster
// (`make run`), never for a real cluster. No container runs there, so istiod
// never answers its sidecar-injector webhook; this command serves the
// stand-in of test/injector on 127.0.0.1 instead and registers it, so that
// new pods in namespaces labelled meshkeeper.io/injector-standin=enabled get
// the sidecar the installed Istio would inject. It unregisters the webhook on
// SIGINT or SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/meshkeeper/istio-operator/test/injector"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("injector-standin", flag.ContinueOnError)
	kubeconfig := fs.String("kubeconfig", "", "Path to a kubeconfig. Default: $KUBECONFIG, else ~/.kube/config.")
	image := fs.String("image", "", "Inject this proxy image with Istio's default sidecar settings, instead of reading the installed "+
		"Istio's injector configuration (ConfigMap istio-system/istio-sidecar-injector) for every pod.")
	klog.InitFlags(fs)
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}

	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = *kubeconfig
	config, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		fmt.Fprintf(os.Stderr, "injector-standin: loading kubeconfig: %v\n", err)
		return 1
	}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		fmt.Fprintf(os.Stderr, "injector-standin: %v\n", err)
		return 1
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx = klog.NewContext(ctx, klog.Background())

	source, what := injector.FromCluster(client), "what the installed Istio injects (ConfigMap "+
		injector.IstioNamespace+"/istio-sidecar-injector, read for every pod)"
	if *image != "" {
		source, what = injector.Static(injector.DefaultConfig(*image)), "image "+*image+" with Istio's default sidecar settings"
	}

	server, err := injector.Start(ctx, source)
	if err != nil {
		fmt.Fprintf(os.Stderr, "injector-standin: %v\n", err)
		return 1
	}
	defer func() { _ = server.Close() }()
	if err := server.Register(ctx, client); err != nil {
		fmt.Fprintf(os.Stderr, "injector-standin: %v\n", err)
		return 1
	}
	fmt.Printf("injector-standin: serving %s, registered MutatingWebhookConfiguration %s on %s\n",
		server.URL(), injector.WebhookConfigurationName, config.Host)
	fmt.Printf("injector-standin: new pods in namespaces labelled %s=%s get %s\n",
		injector.NamespaceLabelKey, injector.NamespaceLabelValue, what)
	fmt.Println("injector-standin: test scaffolding only; Ctrl-C unregisters the webhook and exits")

	<-ctx.Done()
	// A webhook left registered with failurePolicy Fail would refuse every
	// new pod in labelled namespaces once this process is gone.
	cleanup, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := server.Unregister(cleanup, client); err != nil {
		fmt.Fprintf(os.Stderr, "injector-standin: %v (delete MutatingWebhookConfiguration %s by hand)\n",
			err, injector.WebhookConfigurationName)
		return 1
	}
	fmt.Printf("injector-standin: unregistered %s\n", injector.WebhookConfigurationName)
	return 0
}
