package k8sattributionprocessor

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Resource attributes read or written by the processor.
const (
	attrProcessPID       = "process.pid"
	attrContainerID      = "container.id"
	attrContainerName    = "k8s.container.name"
	attrImageName        = "container.image.name"
	attrImageTag         = "container.image.tag"
	attrNamespace        = "k8s.namespace.name"
	attrPodName          = "k8s.pod.name"
	attrPodUID           = "k8s.pod.uid"
	attrNodeName         = "k8s.node.name"
	attrDeployment       = "k8s.deployment.name"
	attrReplicaSet       = "k8s.replicaset.name"
	attrStatefulSet      = "k8s.statefulset.name"
	attrDaemonSet        = "k8s.daemonset.name"
	attrJob              = "k8s.job.name"
	attrCronJob          = "k8s.cronjob.name"
	attrServiceAccount   = "k8s.pod.service_account.name"
	attrHostName         = "host.name"
	attrWorkloadKind     = "agenttrail.workload.kind"
	attrAttribution      = "agenttrail.k8s.attribution"
	attrOwnerUnresolved  = "agenttrail.k8s.owner_unresolved"
	labelPrefix          = "k8s.pod.label."
	annotationPrefix     = "k8s.pod.annotation."
	workloadKindK8s      = "k8s"
	workloadKindHost     = "host"
	attributionOK        = "ok"
	attributionLate      = "late"
	attributionMissing   = "missing"
	attributionHost      = "host"
	mirrorPodAnnotation  = "kubernetes.io/config.mirror"
	ownerKindReplicaSet  = "ReplicaSet"
	ownerKindDeployment  = "Deployment"
	ownerKindStatefulSet = "StatefulSet"
	ownerKindDaemonSet   = "DaemonSet"
	ownerKindJob         = "Job"
	ownerKindCronJob     = "CronJob"
)

// reservedAttributes may not be used as tag_name of an extracted label or
// annotation.
var reservedAttributes = map[string]bool{
	attrProcessPID: true, attrContainerID: true, attrContainerName: true, attrImageName: true,
	attrImageTag: true, attrNamespace: true, attrPodName: true, attrPodUID: true, attrNodeName: true,
	attrDeployment: true, attrReplicaSet: true, attrStatefulSet: true, attrDaemonSet: true,
	attrJob: true, attrCronJob: true, attrServiceAccount: true, attrHostName: true,
	attrWorkloadKind: true, attrAttribution: true, attrOwnerUnresolved: true,
}

// kv is one string resource attribute.
type kv struct{ k, v string }

// attribution is the immutable set of attributes of one pod (podLevel) or
// one container of a pod. It is rebuilt, never changed, when the pod or its
// owners change, so pointers to it can be cached and compared.
type attribution struct {
	attrs []kv
	// podUID of the pod it describes.
	podUID string
	// hasContainer: attrs include container.id and k8s.container.name.
	hasContainer bool
	// ownerNeeds is the attribute the owner chain could not fill when this was built
	// (k8s.deployment.name of a ReplicaSet, k8s.cronjob.name of a Job the owner informer did
	// not know): while that informer has not synced, a batch holds the resource for it.
	ownerNeeds string
}

// ownerLookup resolves the second link of the owner chains; nil when the
// processor has no API access.
type ownerLookup interface {
	// replicaSetOwner returns the name of the Deployment owning ReplicaSet
	// namespace/name (uid, when not empty, must match), "" when unknown.
	replicaSetOwner(namespace, name string, uid types.UID) string
	// jobOwner returns the name of the CronJob owning Job namespace/name.
	jobOwner(namespace, name string, uid types.UID) string
}

// extractRule copies one label or annotation.
type extractRule struct{ key, tag string }

func newExtractRules(list []FieldExtractConfig, prefix string) []extractRule {
	rules := make([]extractRule, 0, len(list))
	for _, e := range list {
		tag := e.TagName
		if tag == "" {
			tag = prefix + e.Key
		}
		rules = append(rules, extractRule{key: e.Key, tag: tag})
	}
	return rules
}

// podAttributes builds the pod-level attribution and one attribution per
// container id found in the pod's status (current and last terminated
// container of every init, regular and ephemeral container).
func podAttributes(pod *corev1.Pod, owners ownerLookup, labels, annotations []extractRule) (podLevel *attribution, byCID map[string]*attribution) {
	common := make([]kv, 0, 16)
	add := func(k, v string) {
		if v != "" {
			common = append(common, kv{k, v})
		}
	}
	add(attrNamespace, pod.Namespace)
	add(attrPodName, pod.Name)
	add(attrPodUID, string(pod.UID))
	add(attrNodeName, pod.Spec.NodeName)
	add(attrServiceAccount, pod.Spec.ServiceAccountName)
	needs := ""
	if ref := controllerRef(pod.OwnerReferences); ref != nil {
		switch ref.Kind {
		case ownerKindReplicaSet:
			add(attrReplicaSet, ref.Name)
			if owners != nil {
				name := owners.replicaSetOwner(pod.Namespace, ref.Name, ref.UID)
				add(attrDeployment, name)
				if name == "" {
					needs = attrDeployment
				}
			}
		case ownerKindStatefulSet:
			add(attrStatefulSet, ref.Name)
		case ownerKindDaemonSet:
			add(attrDaemonSet, ref.Name)
		case ownerKindJob:
			add(attrJob, ref.Name)
			if owners != nil {
				name := owners.jobOwner(pod.Namespace, ref.Name, ref.UID)
				add(attrCronJob, name)
				if name == "" {
					needs = attrCronJob
				}
			}
		}
	}
	for _, r := range labels {
		if v, ok := pod.Labels[r.key]; ok {
			common = append(common, kv{r.tag, v})
		}
	}
	for _, r := range annotations {
		if v, ok := pod.Annotations[r.key]; ok {
			common = append(common, kv{r.tag, v})
		}
	}
	podLevel = &attribution{attrs: common, podUID: string(pod.UID), ownerNeeds: needs}

	images := map[string]string{}
	for _, c := range pod.Spec.InitContainers {
		images[c.Name] = c.Image
	}
	for _, c := range pod.Spec.Containers {
		images[c.Name] = c.Image
	}
	for _, c := range pod.Spec.EphemeralContainers {
		images[c.Name] = c.Image
	}
	byCID = map[string]*attribution{}
	addContainer := func(rawID, name, statusImage string) {
		id := trimContainerID(rawID)
		if id == "" {
			return
		}
		if _, dup := byCID[id]; dup {
			return
		}
		attrs := make([]kv, len(common), len(common)+4)
		copy(attrs, common)
		attrs = append(attrs, kv{attrContainerName, name}, kv{attrContainerID, id})
		image := images[name]
		if image == "" {
			image = statusImage
		}
		if n, tag := parseImage(image); n != "" {
			attrs = append(attrs, kv{attrImageName, n})
			if tag != "" {
				attrs = append(attrs, kv{attrImageTag, tag})
			}
		}
		byCID[id] = &attribution{attrs: attrs, podUID: string(pod.UID), hasContainer: true, ownerNeeds: needs}
	}
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses, pod.Status.EphemeralContainerStatuses} {
		for i := range list {
			cs := &list[i]
			addContainer(cs.ContainerID, cs.Name, cs.Image)
			if t := cs.LastTerminationState.Terminated; t != nil {
				// The previous instance of a restarted container: its
				// spans may still be in flight.
				addContainer(t.ContainerID, cs.Name, cs.Image)
			}
		}
	}
	return podLevel, byCID
}

// controllerRef returns the owner reference marked controller, else the
// first one, else nil.
func controllerRef(refs []metav1.OwnerReference) *metav1.OwnerReference {
	for i := range refs {
		if refs[i].Controller != nil && *refs[i].Controller {
			return &refs[i]
		}
	}
	if len(refs) > 0 {
		return &refs[0]
	}
	return nil
}

// trimContainerID turns "containerd://<id>", "cri-o://<id>" or
// "docker://<id>" into "<id>" (lowercase); "" stays "".
func trimContainerID(s string) string {
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	return strings.ToLower(strings.TrimSpace(s))
}

// parseImage splits an image reference into name and tag:
// "ghcr.io/acme/agent:1.4@sha256:..." → ("ghcr.io/acme/agent", "1.4");
// "nginx" → ("nginx", ""); "host:5000/app" → ("host:5000/app", "").
func parseImage(ref string) (name, tag string) {
	ref = strings.TrimSpace(ref)
	if at := strings.IndexByte(ref, '@'); at >= 0 {
		ref = ref[:at]
	}
	if ref == "" {
		return "", ""
	}
	slash := strings.LastIndexByte(ref, '/')
	if colon := strings.LastIndexByte(ref, ':'); colon > slash {
		return ref[:colon], ref[colon+1:]
	}
	return ref, ""
}
