package main

import (
	"reflect"
	"strings"
	"testing"

	v1alpha2 "github.com/meshkeeper/istio-operator/pkg/apis/operator/v1alpha2"
)

func TestImageDefaults(t *testing.T) {
	for name, tc := range map[string]struct {
		registry, secrets string
		want              v1alpha2.Images
		wantErr           string
	}{
		"nothing set":         {want: v1alpha2.Images{}},
		"host and path":       {registry: "registry.example.com/mirror/istio", want: v1alpha2.Images{Registry: "registry.example.com/mirror/istio"}},
		"host with port":      {registry: " localhost:5000 ", want: v1alpha2.Images{Registry: "localhost:5000"}},
		"secrets with spaces": {secrets: "pull-a, pull.b ,,", want: v1alpha2.Images{PullSecrets: []string{"pull-a", "pull.b"}}},
		"scheme":              {registry: "https://registry.example.com", wantErr: "--istio-registry"},
		"tag":                 {registry: "registry.example.com/istio:1.31", wantErr: "without scheme or tag"},
		"upper case":          {registry: "Registry.example.com", wantErr: "--istio-registry"},
		"secret name":         {secrets: "ok,Not_OK", wantErr: `"Not_OK" is not a Secret name`},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := imageDefaults(tc.registry, tc.secrets)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
