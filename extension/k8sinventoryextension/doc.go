// Package k8sinventoryextension implements the AgentTrail "k8s_inventory" extension: it runs one
// set of pod, ReplicaSet and Job informers (client-go) on a node, or cluster-wide, and shares
// them with the components that name it — the k8sattribution processor (`inventory:`) and the
// eBPF receiver's Kubernetes targets — so a node holds one pod cache and one watch per resource
// on the API server instead of one per component. The collector starts extensions before
// pipelines and stops them after, so the informers outlive the components that use them.
package k8sinventoryextension // import "github.com/agenttrail/agenttrail/extension/k8sinventoryextension"
