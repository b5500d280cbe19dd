package v1alpha2

// Condition types. Each type is written by exactly one controller, its
// owner; the other controllers only read it. docs/conditions.md describes
// them for users.
const (
	// ConditionReady summarises all other conditions into the resource's
	// readiness; state and description are derived with it.
	// Owner: installation controller (its status aggregation step).
	ConditionReady = "Ready"

	// ConditionInstalled is True when Istio is installed at the operator's
	// version with the desired configuration. The other controllers wait for
	// it before they act.
	// Owner: installation controller.
	ConditionInstalled = "Installed"

	// ConditionProxySidecarRestartSucceeded is True when every injected
	// workload runs the desired sidecar proxy. Name as in Kyma.
	// Owner: proxy sidecar controller.
	ConditionProxySidecarRestartSucceeded = "ProxySidecarRestartSucceeded"

	// ConditionIngressGatewayReady is True when the ingress gateway runs the
	// desired configuration and is available.
	// Owner: ingress gateway controller.
	ConditionIngressGatewayReady = "IngressGatewayReady"

	// ConditionIngressTargetingUserResourceFound is True when a user's
	// EnvoyFilter in istio-system targets the ingress gateway. Name as in Kyma.
	// Owner: ingress gateway controller.
	ConditionIngressTargetingUserResourceFound = "IngressTargetingUserResourceFound"

	// ConditionCanaryUpgrade follows a canary upgrade (spec.upgradeStrategy
	// Canary): False with the phase as reason while two control planes
	// run, True once the upgrade or its rollback is complete. Absent until
	// the first canary upgrade. Extension.
	// Owner: installation controller.
	ConditionCanaryUpgrade = "CanaryUpgrade"

	// ConditionProxySidecarsOnRevision is True when no pod of the mesh uses
	// another of the operator's revisions than the one a canary upgrade (or
	// its rollback) moves to; the message counts the workloads moved.
	// Present only during a canary upgrade; the installation controller
	// removes the old control plane once it is True. Extension.
	// Owner: proxy sidecar controller.
	ConditionProxySidecarsOnRevision = "ProxySidecarsOnRevision"

	// ConditionPeerAuthenticationReady is True when the mesh-wide
	// PeerAuthentication istio-system/default enforces the desired mTLS mode.
	// Owner: PeerAuthentication controller.
	ConditionPeerAuthenticationReady = "PeerAuthenticationReady"
)

// Reasons of the Ready condition and the Installed condition. Owner:
// installation controller. Names follow Kyma where Kyma has one; Kyma's
// reasons for states this operator does not have (ReconcileUnknown,
// ReconcileFailed, OldestCRNotFound, ComponentNotReady, the
// CustomResourcesReconcile pair) are not declared.
const (
	ReasonReconcileSucceeded               = "ReconcileSucceeded"
	ReasonValidationFailed                 = "ValidationFailed"
	ReasonOlderCRExists                    = "OlderCRExists"
	ReasonWrongNamespace                   = "WrongNamespace"
	ReasonIstioInstalling                  = "IstioInstalling"
	ReasonIstioInstallSucceeded            = "IstioInstallSucceeded"
	ReasonIstioInstallUninstallFailed      = "IstioInstallUninstallFailed"
	ReasonIstioCustomResourceMisconfigured = "IstioCustomResourceMisconfigured"
	ReasonIstioCustomResourcesDangling     = "IstioCustomResourcesDangling"
	ReasonIstioVersionUpdateNotAllowed     = "IstioVersionUpdateNotAllowed"
	ReasonForeignIstioFound                = "ForeignIstioFound"
	ReasonIstioUninstalling                = "IstioUninstalling"
	// ReasonIstioUninstallSucceeded: Istio is uninstalled; the resource
	// goes once the proxy sidecar controller has restarted the workloads
	// with sidecars (unless AnnotationKeepSidecars).
	ReasonIstioUninstallSucceeded         = "IstioUninstallSucceeded"
	ReasonExperimentalFeatureNotAvailable = "ExperimentalFeatureNotAvailable"
	ReasonWaitingForDependency            = "WaitingForDependency"
)

// ReasonWaitingForInstallation is the reason of the proxy sidecar, ingress
// gateway and PeerAuthentication conditions while Installed is not True at
// the current generation: they act only on an installed Istio.
const ReasonWaitingForInstallation = "WaitingForInstallation"

// Reasons of ProxySidecarRestartSucceeded. Owner: proxy sidecar controller.
const (
	ReasonProxySidecarRestartInProgress = "ProxySidecarRestartInProgress"
	ReasonProxySidecarRestartSucceeded  = "ProxySidecarRestartSucceeded"
	ReasonProxySidecarRestartFailed     = "ProxySidecarRestartFailed"
	// ReasonProxySidecarRestartPartiallySucceeded: only customer workloads
	// are blocked (a Warning); a blocked platform workload is
	// ProxySidecarRestartFailed (an Error).
	ReasonProxySidecarRestartPartiallySucceeded = "ProxySidecarRestartPartiallySucceeded"
	ReasonProxySidecarManualRestartRequired     = "ProxySidecarManualRestartRequired"
	// ReasonProxySidecarRestartWaitingForWindow: outdated workloads wait for
	// the next maintenance window (planned work, Processing).
	ReasonProxySidecarRestartWaitingForWindow = "ProxySidecarRestartWaitingForWindow"
	// ReasonProxySidecarMaintenanceWindowInvalid: a maintenance window names
	// a time zone the operator does not know, so nothing is restarted (an
	// Error).
	ReasonProxySidecarMaintenanceWindowInvalid = "ProxySidecarMaintenanceWindowInvalid"
	// After an uninstall (Installed False, IstioUninstallSucceeded) the
	// workloads with sidecars are restarted without them: in progress,
	// done, or done as far as possible (blocked workloads and pods nothing
	// can restart keep theirs, named). The installation controller lets the
	// resource go after either of the last two.
	ReasonProxySidecarRemovalInProgress = "ProxySidecarRemovalInProgress"
	ReasonProxySidecarsRemoved          = "ProxySidecarsRemoved"
	ReasonProxySidecarRemovalIncomplete = "ProxySidecarRemovalIncomplete"
)

// AnnotationKeepSidecars, "true" on the Istio resource, lets it go right
// after the uninstall: workloads keep their sidecars until they restart.
const AnnotationKeepSidecars = "istio-operator.kyma-project.io/keep-sidecars-on-uninstall"

// Reasons of CanaryUpgrade, one per phase, and of the Ready condition
// while a rolled back upgrade is held (CanaryRolledBack). Owner:
// installation controller. Each is also recorded as an Event when the
// phase begins.
const (
	ReasonCanaryInstallingRevision  = "CanaryInstallingRevision"
	ReasonCanaryMovingWorkloads     = "CanaryMovingWorkloads"
	ReasonCanaryRemovingRevision    = "CanaryRemovingRevision"
	ReasonCanaryUpgradeSucceeded    = "CanaryUpgradeSucceeded"
	ReasonCanaryRollingBack         = "CanaryRollingBack"
	ReasonCanaryRemovingNewRevision = "CanaryRemovingNewRevision"
	ReasonCanaryRolledBack          = "CanaryRolledBack"
)

// Reasons of ProxySidecarsOnRevision. Owner: proxy sidecar controller.
const (
	// ReasonProxySidecarsOnRevision: every pod uses the revision moved to.
	ReasonProxySidecarsOnRevision = "ProxySidecarsOnRevision"
	// ReasonProxySidecarsMoving: pods still use the revision moved from.
	ReasonProxySidecarsMoving = "ProxySidecarsMoving"
	// ReasonProxySidecarsPinned: pods that stay are pinned to the revision
	// moved from by an istio.io/rev label; they are not restarted.
	ReasonProxySidecarsPinned = "ProxySidecarsPinned"
)

// Reasons of IngressGatewayReady and IngressTargetingUserResourceFound.
// Owner: ingress gateway controller.
const (
	ReasonIngressGatewayRestartInProgress = "IngressGatewayRestartInProgress"
	ReasonIngressGatewayRestartSucceeded  = "IngressGatewayRestartSucceeded"
	ReasonIngressGatewayRestartFailed     = "IngressGatewayRestartFailed"
	ReasonIngressGatewayMissing           = "IngressGatewayMissing"
	ReasonIngressTargetingUserResource    = "IngressTargetingUserResourceFound"
	ReasonIngressNoUserResourceFound      = "IngressTargetingUserResourceNotFound"
)

// Reasons of PeerAuthenticationReady. Owner: PeerAuthentication controller.
const (
	ReasonPeerAuthenticationApplied  = "PeerAuthenticationApplied"
	ReasonPeerAuthenticationFailed   = "PeerAuthenticationFailed"
	ReasonPeerAuthenticationWeakened = "MeshMTLSWeakened"
)

// Event reasons besides the condition reasons (a condition that turns to a
// Warning or Error is also recorded as an Event with its reason). Events
// are recorded on the Istio resource unless said otherwise; each reason has
// one owner. docs/conditions.md lists them for users.

// Events of the installation controller. An install, upgrade or
// reconfiguration records Started, then Succeeded or Failed; a repair of
// drifted objects records only Succeeded or Failed.
const (
	EventInstallStarted   = "InstallStarted"
	EventInstallSucceeded = "InstallSucceeded"
	EventInstallFailed    = "InstallFailed"
	EventUpgradeStarted   = "UpgradeStarted"
	EventUpgradeSucceeded = "UpgradeSucceeded"
	EventUpgradeFailed    = "UpgradeFailed"
	EventUpdateStarted    = "UpdateStarted"
	EventUpdateSucceeded  = "UpdateSucceeded"
	EventUpdateFailed     = "UpdateFailed"
	EventRepairSucceeded  = "RepairSucceeded"
	EventRepairFailed     = "RepairFailed"
	// EventRevisionRemoval*: a canary upgrade (or its rollback) removes
	// the control plane revision no pod uses any more.
	EventRevisionRemovalStarted   = "RevisionRemovalStarted"
	EventRevisionRemovalSucceeded = "RevisionRemovalSucceeded"
	EventRevisionRemovalFailed    = "RevisionRemovalFailed"
	EventUninstallSkipped         = "UninstallSkipped"
	EventDeletingUserResources    = "DeletingUserResources"
	EventUninstallStarted         = "UninstallStarted"
	EventUninstallSucceeded       = "UninstallSucceeded"
	EventUninstallFailed          = "UninstallFailed"
	EventNamespaceKept            = "NamespaceKept"
	// EventProfileChanged: the installation's profile changed (spec.profile,
	// or the promotion of an evaluation installation).
	EventProfileChanged = "ProfileChanged"
)

// Events of the proxy sidecar controller. Restarted and EvictionBlocked are
// recorded on the workload, as is a workload's RestartFailed (the condition
// reason); RestartEventsLimited on the Istio resource.
const (
	EventProxySidecarRestarted            = "ProxySidecarRestarted"
	EventProxySidecarEvictionBlocked      = "ProxySidecarEvictionBlocked"
	EventProxySidecarRestartEventsLimited = "ProxySidecarRestartEventsLimited"
)

// Events of the ingress gateway controller.
const EventIngressGatewayRestarted = "IngressGatewayRestarted"

// Events of the PeerAuthentication controller.
const (
	EventPeerAuthenticationCreated  = "PeerAuthenticationCreated"
	EventPeerAuthenticationRestored = "PeerAuthenticationRestored"
)
