// Package k8sattributionprocessor adds the Kubernetes identity of the traced
// process to every resource: namespace, pod, container, image, node, owning
// workload (Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob),
// service account and chosen labels and annotations, found from the
// container id of the process's cgroup through a pod informer. Processes
// outside any pod are marked as host processes, and every resource says how
// it was attributed (agenttrail.k8s.attribution = ok | late | missing | host).
//
// mdatagen at the collector version this distribution builds with is not
// available, so internal/metadata, the package it would generate from
// metadata.yaml, is written by hand and held to metadata.yaml by its test and
// by component_test.go (which also checks the instrument made in
// telemetry.go against the telemetry metadata.yaml declares).
package k8sattributionprocessor
