// Command local-istiod stands the real istiod (bin/tools/pilot-discovery)
// behind the istiod that the operator installs on the local kwok cluster of
// `make run`, where no container runs. It serves the router the cluster's
// API server dials Services through (the Unix socket of the cluster's egress
// selector configuration, written by hack/cluster.sh) and runs istiod while
// the istiod Deployment exists, until SIGINT or SIGTERM. Development tooling
// for the local cluster only; see test/istiod.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"regexp"
	"syscall"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshkeeper/istio-operator/test/istiod"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("local-istiod", flag.ContinueOnError)
	kubeconfig := fs.String("kubeconfig", "", "Admin kubeconfig of the local cluster.")
	egress := fs.String("egress-selector-config", "", "The API server's egress selector configuration; the router listens on its URL.")
	binary := fs.String("istiod", "bin/tools/pilot-discovery", "The pilot-discovery binary.")
	dir := fs.String("dir", ".cache/istiod", "istiod's working directory.")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if err := serve(*kubeconfig, *egress, *binary, *dir); err != nil {
		fmt.Fprintf(os.Stderr, "local-istiod: %v\n", err)
		return 1
	}
	return 0
}

var routerSocket = regexp.MustCompile(`udsName: (\S+)`)

func serve(kubeconfig, egress, binary, dir string) error {
	raw, err := os.ReadFile(egress)
	if err != nil {
		return fmt.Errorf("reading the egress selector configuration: %w", err)
	}
	m := routerSocket.FindSubmatch(raw)
	if m == nil {
		return fmt.Errorf("%s names no Unix socket (udsName)", egress)
	}
	router, err := istiod.NewRouter(string(m[1]))
	if err != nil {
		return err
	}
	defer router.Close()

	config, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return err
	}
	router.SetClient(client)
	s, err := istiod.NewSupervisor(istiod.Options{
		Binary: binary, Kubeconfig: kubeconfig, Client: client, Router: router, Dir: dir, Log: os.Stdout,
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Printf("local-istiod: routing the API server's Service calls from %s; istiod runs while istio-system/istiod exists\n", m[1])
	s.Run(ctx)
	return nil
}
