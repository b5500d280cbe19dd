#!/usr/bin/env bash
# Checks the package layers of docs/architecture.md: a package imports only
# packages of lower layers (or of its own layer where the layer allows it),
# the controllers never import each other, only pkg/istioclient imports
# istio.io/istio, and nothing imports controller-runtime. Test imports count
# too, except for the Istio rule (tests may use Istio's packages).
set -euo pipefail
cd "$(dirname "$0")/.."

module=$(go list -m)

# layer prints a package's layer and whether packages of that layer may
# import each other ("shared"), or "-" for packages outside the map.
layer() {
	case "$1" in
	pkg/apis/* | pkg/generated/*) echo "0 shared" ;;
	pkg/logging | pkg/metrics | pkg/exepages | pkg/reconnect | pkg/watchtimeout | pkg/rollout | pkg/message | pkg/maintenance) echo "1 apart" ;;
	pkg/istioclient) echo "2 apart" ;;
	pkg/controllers/controller | pkg/controllers/controllertest | pkg/controllers/queue | pkg/controllers/status | pkg/controllers/istiowatch | pkg/controllers/podcache) echo "3 shared" ;;
	pkg/controllers/installation | pkg/controllers/ingressgateway | pkg/controllers/peerauthentication | pkg/controllers/proxysidecar) echo "4 apart" ;;
	pkg/operator) echo "5 apart" ;;
	cmd/*) echo "6 apart" ;;
	*) echo "-" ;;
	esac
}

fail=0
while read -r pkg kind imports; do
	pkg=${pkg#"$module"/}
	read -r mine share <<<"$(layer "$pkg")"
	if [[ $mine == "-" ]]; then
		echo "$pkg: not in the layer map of hack/verify-layers.sh (and docs/architecture.md)"
		fail=1
		continue
	fi
	for imp in $imports; do
		case "$imp" in
		sigs.k8s.io/controller-runtime*)
			echo "$pkg imports $imp: the operator is built on client-go, without controller-runtime"
			fail=1
			;;
		istio.io/istio/*)
			if [[ $kind == code && $pkg != pkg/istioclient ]]; then
				echo "$pkg imports $imp: only pkg/istioclient imports Istio's packages"
				fail=1
			fi
			;;
		"$module"/*)
			dep=${imp#"$module"/}
			read -r theirs _ <<<"$(layer "$dep")"
			[[ $dep == "$pkg" || $theirs == "-" ]] && continue
			if ((theirs > mine)) || { ((theirs == mine)) && [[ $share != shared ]]; }; then
				echo "$pkg (layer $mine) imports $dep (layer $theirs): imports go to lower layers only"
				fail=1
			fi
			;;
		esac
	done
done < <(go list -e -f '{{.ImportPath}} code {{join .Imports " "}}
{{.ImportPath}} test {{join .TestImports " "}} {{join .XTestImports " "}}' ./pkg/... ./cmd/...)

if ((fail)); then
	echo "package layers violated (see docs/architecture.md, Packages)"
	exit 1
fi
echo "package layers: ok"
