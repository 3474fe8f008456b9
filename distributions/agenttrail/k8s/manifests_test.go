package k8s_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// manifest is one decoded YAML document.
type manifest struct {
	file string
	kind string
	obj  runtime.Object
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*(#.*)?$`)

// splitDocuments splits a multi-document YAML file, dropping documents that
// hold only comments and whitespace.
func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range docSeparator.Split(string(data), -1) {
		empty := true
		for _, line := range strings.Split(d, "\n") {
			if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
				empty = false
				break
			}
		}
		if !empty {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

func strictSerializer() *json.Serializer {
	return json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
		json.SerializerOptions{Yaml: true, Strict: true})
}

// decodeDocument decodes doc with the universal deserializer and, to catch
// unknown or duplicate fields, again with a strict YAML serializer.
func decodeDocument(doc []byte) (runtime.Object, string, error) {
	obj, gvk, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
	if err != nil {
		return nil, "", err
	}
	if _, _, err := strictSerializer().Decode(doc, nil, nil); err != nil {
		return nil, "", err
	}
	return obj, gvk.Kind, nil
}

func loadManifests(t *testing.T, file string) []manifest {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []manifest
	for i, doc := range splitDocuments(data) {
		obj, kind, err := decodeDocument(doc)
		if err != nil {
			t.Fatalf("%s document %d: %v", file, i+1, err)
		}
		out = append(out, manifest{file: file, kind: kind, obj: obj})
	}
	return out
}

func kinds(ms []manifest) []string {
	var ks []string
	for _, m := range ms {
		ks = append(ks, m.kind)
	}
	sort.Strings(ks)
	return ks
}

// only returns the single object of type T in ms.
func only[T runtime.Object](t *testing.T, ms []manifest) T {
	t.Helper()
	var found []T
	for _, m := range ms {
		if o, ok := m.obj.(T); ok {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("want exactly one %T, found %d", zero, len(found))
	}
	return found[0]
}

// kustomization is the subset of kustomize's Kustomization used here;
// decoded strictly so a misspelled key fails the test.
type kustomization struct {
	APIVersion         string            `json:"apiVersion"`
	Kind               string            `json:"kind"`
	Namespace          string            `json:"namespace"`
	Resources          []string          `json:"resources"`
	Labels             []any             `json:"labels,omitempty"`
	Images             []any             `json:"images,omitempty"`
	Patches            []any             `json:"patches,omitempty"`
	ConfigMapGenerator []configMapArgs   `json:"configMapGenerator"`
	GeneratorOptions   *generatorOptions `json:"generatorOptions,omitempty"`
}

type configMapArgs struct {
	Name      string   `json:"name"`
	Namespace string   `json:"namespace,omitempty"`
	Behavior  string   `json:"behavior,omitempty"`
	Files     []string `json:"files,omitempty"`
	Literals  []string `json:"literals,omitempty"`
}

type generatorOptions struct {
	DisableNameSuffixHash bool              `json:"disableNameSuffixHash"`
	Labels                map[string]string `json:"labels,omitempty"`
	Annotations           map[string]string `json:"annotations,omitempty"`
}

func loadKustomization(t *testing.T) kustomization {
	t.Helper()
	data, err := os.ReadFile("../kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	return k
}

// generatorFile returns the (key, path) of a configMapGenerator "files" entry
// ("key=path" or "path", whose key is the file's base name).
func generatorFile(entry string) (key, path string) {
	if k, p, ok := strings.Cut(entry, "="); ok {
		return k, p
	}
	return filepath.Base(entry), entry
}

// generatorFor returns the generator whose only file is path, under key.
func generatorFor(t *testing.T, k kustomization, path string) configMapArgs {
	t.Helper()
	for _, g := range k.ConfigMapGenerator {
		for _, f := range g.Files {
			if _, p := generatorFile(f); p == path {
				return g
			}
		}
	}
	t.Fatalf("kustomization.yaml has no configMapGenerator reading %s", path)
	return configMapArgs{}
}

func TestManifestKinds(t *testing.T) {
	tests := []struct {
		file  string
		kinds []string
	}{
		{"daemonset.yaml", []string{"ClusterRole", "ClusterRoleBinding", "DaemonSet", "Namespace", "ServiceAccount"}},
		{"gateway.yaml", []string{"Deployment", "Service", "Service"}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			if got := kinds(loadManifests(t, tc.file)); !slices.Equal(got, tc.kinds) {
				t.Errorf("kinds = %v; want %v", got, tc.kinds)
			}
		})
	}
}

func agentContainer(t *testing.T, ds *appsv1.DaemonSet) corev1.Container {
	t.Helper()
	if n := len(ds.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("DaemonSet has %d containers; want 1", n)
	}
	return ds.Spec.Template.Spec.Containers[0]
}

func TestDaemonSet(t *testing.T) {
	ms := loadManifests(t, "daemonset.yaml")
	ds := only[*appsv1.DaemonSet](t, ms)
	pod := ds.Spec.Template.Spec
	c := agentContainer(t, ds)

	if ds.Name != "agenttrail-agent" || ds.Namespace != "agenttrail" {
		t.Errorf("DaemonSet is %s/%s; want agenttrail/agenttrail-agent", ds.Namespace, ds.Name)
	}
	ns := only[*corev1.Namespace](t, ms)
	if ns.Name != ds.Namespace {
		t.Errorf("Namespace %q is not the DaemonSet's namespace %q", ns.Name, ds.Namespace)
	}
	if !pod.HostPID {
		t.Error("hostPID must be true")
	}
	if pod.HostNetwork || pod.HostIPC {
		t.Errorf("hostNetwork=%v hostIPC=%v; want both false", pod.HostNetwork, pod.HostIPC)
	}
	sel := ds.Spec.Selector.MatchLabels
	for k, v := range sel {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the pod template labels %v", k, v, ds.Spec.Template.Labels)
		}
	}

	t.Run("command", func(t *testing.T) {
		got := append(slices.Clone(c.Command), c.Args...)
		want := []string{"/otelcol-agenttrail", "--config=/etc/agenttrail/config.yaml"}
		if !slices.Equal(got, want) {
			t.Errorf("command+args = %q; want %q", got, want)
		}
	})

	t.Run("securityContext", func(t *testing.T) {
		sc := c.SecurityContext
		if sc == nil {
			t.Fatal("container has no securityContext")
		}
		if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
			t.Errorf("runAsUser = %v; want 0", sc.RunAsUser)
		}
		if sc.Privileged == nil || *sc.Privileged {
			t.Errorf("privileged = %v; want explicitly false", sc.Privileged)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("allowPrivilegeEscalation = %v; want explicitly false", sc.AllowPrivilegeEscalation)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("readOnlyRootFilesystem = %v; want true", sc.ReadOnlyRootFilesystem)
		}
		if sc.Capabilities == nil {
			t.Fatal("no capabilities section")
		}
		if drop := capNames(sc.Capabilities.Drop); !slices.Equal(drop, []string{"ALL"}) {
			t.Errorf("capabilities.drop = %v; want [ALL]", drop)
		}
		add := capNames(sc.Capabilities.Add)
		if want := []string{"BPF", "PERFMON", "SYS_ADMIN", "SYS_PTRACE", "SYS_RESOURCE"}; !slices.Equal(add, want) {
			t.Errorf("capabilities.add = %v; want exactly %v", add, want)
		}
	})

	t.Run("hostPaths", func(t *testing.T) {
		tests := []struct {
			hostPath, mountPath string
			typ                 corev1.HostPathType
			readOnly            bool
		}{
			{"/sys/kernel/btf", "/sys/kernel/btf", corev1.HostPathDirectory, true},
			{"/sys/kernel/tracing", "/sys/kernel/tracing", corev1.HostPathDirectory, true},
			{"/sys/fs/bpf", "/sys/fs/bpf", corev1.HostPathDirectory, false},
			{"/proc", "/host/proc", corev1.HostPathDirectory, true},
			{"/sys/fs/cgroup", "/host/sys/fs/cgroup", corev1.HostPathDirectory, true},
			{"/var/lib/agenttrail", "/var/lib/agenttrail", corev1.HostPathDirectoryOrCreate, false},
		}
		seen := map[string]bool{}
		for _, tc := range tests {
			seen[tc.hostPath] = true
			v := volumeByHostPath(pod.Volumes, tc.hostPath)
			if v == nil {
				t.Errorf("no hostPath volume for %s", tc.hostPath)
				continue
			}
			if v.HostPath.Type == nil || *v.HostPath.Type != tc.typ {
				t.Errorf("hostPath %s type = %v; want %q", tc.hostPath, v.HostPath.Type, tc.typ)
			}
			m := mountByName(c.VolumeMounts, v.Name)
			if m == nil {
				t.Errorf("hostPath volume %q (%s) is not mounted", v.Name, tc.hostPath)
				continue
			}
			if m.MountPath != tc.mountPath || m.ReadOnly != tc.readOnly {
				t.Errorf("hostPath %s mounted at %s readOnly=%v; want %s readOnly=%v",
					tc.hostPath, m.MountPath, m.ReadOnly, tc.mountPath, tc.readOnly)
			}
			if m.MountPropagation != nil && *m.MountPropagation != corev1.MountPropagationNone {
				t.Errorf("hostPath %s has mountPropagation %s; none is needed", tc.hostPath, *m.MountPropagation)
			}
		}
		for _, v := range pod.Volumes {
			if v.HostPath != nil && !seen[v.HostPath.Path] {
				t.Errorf("unexpected hostPath volume %q (%s)", v.Name, v.HostPath.Path)
			}
		}
	})

	t.Run("nodeName env", func(t *testing.T) {
		var found bool
		for _, e := range c.Env {
			if e.Name != "K8S_NODE_NAME" {
				continue
			}
			found = true
			if e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
				t.Errorf("K8S_NODE_NAME = %+v; want valueFrom.fieldRef.fieldPath spec.nodeName", e)
			}
		}
		if !found {
			t.Error("no K8S_NODE_NAME env")
		}
	})

	t.Run("resources", func(t *testing.T) {
		checkQuantity(t, "requests.cpu", c.Resources.Requests, corev1.ResourceCPU, "100m")
		checkQuantity(t, "requests.memory", c.Resources.Requests, corev1.ResourceMemory, "256Mi")
		checkQuantity(t, "limits.cpu", c.Resources.Limits, corev1.ResourceCPU, "1")
		checkQuantity(t, "limits.memory", c.Resources.Limits, corev1.ResourceMemory, "512Mi")
	})

	t.Run("tolerations", func(t *testing.T) {
		for _, tol := range pod.Tolerations {
			if tol.Operator == corev1.TolerationOpExists && tol.Key == "" && tol.Effect == "" {
				return
			}
		}
		t.Errorf("tolerations %+v do not include a key-less operator: Exists (tolerate every taint)", pod.Tolerations)
	})

	t.Run("health probes", func(t *testing.T) {
		checkHealthProbes(t, c)
	})
}

func TestRBAC(t *testing.T) {
	ms := loadManifests(t, "daemonset.yaml")
	ds := only[*appsv1.DaemonSet](t, ms)
	role := only[*rbacv1.ClusterRole](t, ms)
	binding := only[*rbacv1.ClusterRoleBinding](t, ms)
	sa := only[*corev1.ServiceAccount](t, ms)

	type grant struct{ group, resource, verb string }
	want := map[grant]bool{}
	for _, gr := range [][2]string{{"", "pods"}, {"", "namespaces"}, {"apps", "replicasets"}, {"batch", "jobs"}} {
		for _, verb := range []string{"get", "list", "watch"} {
			want[grant{gr[0], gr[1], verb}] = true
		}
	}
	got := map[grant]bool{}
	for i, r := range role.Rules {
		if len(r.ResourceNames) != 0 || len(r.NonResourceURLs) != 0 {
			t.Errorf("rule %d: resourceNames/nonResourceURLs are not expected: %+v", i, r)
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					got[grant{g, res, v}] = true
				}
			}
		}
	}
	for g := range got {
		if !want[g] {
			t.Errorf("ClusterRole grants %q on %q in group %q; only get/list/watch on pods, namespaces, apps/replicasets, batch/jobs are wanted", g.verb, g.resource, g.group)
		}
	}
	for g := range want {
		if !got[g] {
			t.Errorf("ClusterRole does not grant %q on %q in group %q", g.verb, g.resource, g.group)
		}
	}

	if binding.RoleRef.APIGroup != rbacv1.GroupName || binding.RoleRef.Kind != "ClusterRole" || binding.RoleRef.Name != role.Name {
		t.Errorf("ClusterRoleBinding roleRef = %+v; want ClusterRole %s", binding.RoleRef, role.Name)
	}
	wantSubject := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: ds.Spec.Template.Spec.ServiceAccountName, Namespace: ds.Namespace}
	if len(binding.Subjects) != 1 || binding.Subjects[0] != wantSubject {
		t.Errorf("ClusterRoleBinding subjects = %+v; want exactly %+v", binding.Subjects, wantSubject)
	}
	if ds.Spec.Template.Spec.ServiceAccountName != "agenttrail" {
		t.Errorf("DaemonSet serviceAccountName = %q; want agenttrail", ds.Spec.Template.Spec.ServiceAccountName)
	}
	if sa.Name != ds.Spec.Template.Spec.ServiceAccountName || sa.Namespace != ds.Namespace {
		t.Errorf("ServiceAccount %s/%s is not the DaemonSet's %s/%s", sa.Namespace, sa.Name, ds.Namespace, ds.Spec.Template.Spec.ServiceAccountName)
	}
}

func TestKustomization(t *testing.T) {
	k := loadKustomization(t)
	ds := only[*appsv1.DaemonSet](t, loadManifests(t, "daemonset.yaml"))
	dep := only[*appsv1.Deployment](t, loadManifests(t, "gateway.yaml"))

	if want := []string{"k8s/daemonset.yaml", "k8s/gateway.yaml"}; !slices.Equal(k.Resources, want) {
		t.Errorf("resources = %v; want %v", k.Resources, want)
	}
	if k.Namespace != ds.Namespace {
		t.Errorf("kustomization namespace %q differs from the DaemonSet's %q (generated ConfigMaps would land elsewhere)", k.Namespace, ds.Namespace)
	}

	// Every file the kustomization names must exist (paths are relative to its folder, one up).
	t.Run("referenced files exist", func(t *testing.T) {
		var files []string
		files = append(files, k.Resources...)
		for _, g := range k.ConfigMapGenerator {
			for _, f := range g.Files {
				_, p := generatorFile(f)
				files = append(files, p)
			}
		}
		for _, f := range files {
			if _, err := os.Stat(filepath.Join("..", f)); err != nil {
				t.Errorf("kustomization.yaml references %s: %v", f, err)
			}
		}
	})

	tests := []struct {
		name, file, generator string
		spec                  corev1.PodSpec
	}{
		{"agent", "config.yaml", "agenttrail-agent-config", ds.Spec.Template.Spec},
		{"gateway", "gateway.yaml", "agenttrail-gateway-config", dep.Spec.Template.Spec},
	}
	for _, tc := range tests {
		t.Run(tc.name+" config volume", func(t *testing.T) {
			g := generatorFor(t, k, tc.file)
			if g.Name != tc.generator {
				t.Errorf("generator for %s is %q; want %q", tc.file, g.Name, tc.generator)
			}
			if len(g.Files) != 1 {
				t.Errorf("generator %s has files %v; want exactly one", g.Name, g.Files)
			}
			if key, _ := generatorFile(g.Files[0]); key != "config.yaml" {
				t.Errorf("generator %s key = %q; want config.yaml", g.Name, key)
			}
			var cm *corev1.Volume
			for i, v := range tc.spec.Volumes {
				if v.ConfigMap != nil {
					if cm != nil {
						t.Fatalf("more than one ConfigMap volume")
					}
					cm = &tc.spec.Volumes[i]
				}
			}
			if cm == nil {
				t.Fatal("no ConfigMap volume")
			}
			if cm.ConfigMap.Name != g.Name {
				t.Errorf("config volume uses ConfigMap %q; the kustomization generates %q", cm.ConfigMap.Name, g.Name)
			}
			c := tc.spec.Containers[0]
			m := mountByName(c.VolumeMounts, cm.Name)
			if m == nil {
				t.Fatalf("config volume %q is not mounted", cm.Name)
			}
			want := "--config=" + filepath.Join(m.MountPath, "config.yaml")
			if !slices.Contains(append(slices.Clone(c.Command), c.Args...), want) {
				t.Errorf("container does not run with %s (command %q, args %q)", want, c.Command, c.Args)
			}
		})
	}
}

func TestGateway(t *testing.T) {
	ms := loadManifests(t, "gateway.yaml")
	dep := only[*appsv1.Deployment](t, ms)
	svc := service(t, ms, "agenttrail-gateway")
	pod := dep.Spec.Template.Spec

	if dep.Name != "agenttrail-gateway" || dep.Namespace != "agenttrail" {
		t.Errorf("Deployment is %s/%s; want agenttrail/agenttrail-gateway", dep.Namespace, dep.Name)
	}
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 2 {
		t.Errorf("replicas = %v; want 2", dep.Spec.Replicas)
	}
	if pod.HostPID || pod.HostNetwork || pod.HostIPC {
		t.Errorf("hostPID=%v hostNetwork=%v hostIPC=%v; want all false", pod.HostPID, pod.HostNetwork, pod.HostIPC)
	}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			t.Errorf("gateway volume %q is a hostPath (%s)", v.Name, v.HostPath.Path)
		}
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("automountServiceAccountToken = %v; the gateway needs no API access", pod.AutomountServiceAccountToken)
	}
	podNonRoot := pod.SecurityContext != nil && pod.SecurityContext.RunAsNonRoot != nil && *pod.SecurityContext.RunAsNonRoot
	for _, c := range pod.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.Capabilities == nil {
			t.Fatalf("container %s has no capabilities section", c.Name)
		}
		if add := capNames(sc.Capabilities.Add); len(add) != 0 {
			t.Errorf("container %s adds capabilities %v", c.Name, add)
		}
		if drop := capNames(sc.Capabilities.Drop); !slices.Equal(drop, []string{"ALL"}) {
			t.Errorf("container %s drops %v; want [ALL]", c.Name, drop)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("container %s is privileged", c.Name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("container %s allowPrivilegeEscalation = %v; want false", c.Name, sc.AllowPrivilegeEscalation)
		}
		nonRoot := podNonRoot
		if sc.RunAsNonRoot != nil {
			nonRoot = *sc.RunAsNonRoot
		}
		if !nonRoot {
			t.Errorf("container %s is not runAsNonRoot", c.Name)
		}
		if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
			t.Errorf("container %s runs as uid 0", c.Name)
		}
		for _, p := range c.Ports {
			if p.HostPort != 0 {
				t.Errorf("container %s port %s uses hostPort %d", c.Name, p.Name, p.HostPort)
			}
		}
		checkHealthProbes(t, c)
	}

	// The Service exposes OTLP gRPC and HTTP and routes to the pods' ports.
	for k, v := range svc.Spec.Selector {
		if dep.Spec.Template.Labels[k] != v {
			t.Errorf("Service selector %s=%s does not match the gateway pods %v", k, v, dep.Spec.Template.Labels)
		}
	}
	if len(svc.Spec.Selector) == 0 {
		t.Error("Service has no selector")
	}
	c := pod.Containers[0]
	var ports []int32
	for _, p := range svc.Spec.Ports {
		ports = append(ports, p.Port)
		target := containerPort(c, p.TargetPort.String())
		if p.TargetPort.IntVal != 0 {
			target = p.TargetPort.IntVal
		}
		if target != p.Port {
			t.Errorf("Service port %d targets %s, which is container port %d", p.Port, p.TargetPort.String(), target)
		}
	}
	slices.Sort(ports)
	if !slices.Equal(ports, []int32{4317, 4318}) {
		t.Errorf("Service ports = %v; want [4317 4318]", ports)
	}
}

// TestGatewayReplicasRouted: the gateway runs 2 replicas, which the storyjoin supports only
// when the agents route both halves of a call to one replica: the agent config's traces go
// through storyroute, whose DNS name is the headless Service of the gateway pods (the ready
// ones only) and whose port is their OTLP/gRPC port.
func TestGatewayReplicasRouted(t *testing.T) {
	ms := loadManifests(t, "gateway.yaml")
	dep := only[*appsv1.Deployment](t, ms)
	hl := service(t, ms, "agenttrail-gateway-headless")
	if hl.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("%s clusterIP = %q; want None (headless: one address per pod)", hl.Name, hl.Spec.ClusterIP)
	}
	if hl.Spec.PublishNotReadyAddresses {
		t.Errorf("%s publishes pods that are not ready: a starting replica would get keys", hl.Name)
	}
	if len(hl.Spec.Selector) == 0 {
		t.Errorf("%s has no selector", hl.Name)
	}
	for k, v := range hl.Spec.Selector {
		if dep.Spec.Template.Labels[k] != v {
			t.Errorf("%s selector %s=%s does not match the gateway pods %v", hl.Name, k, v, dep.Spec.Template.Labels)
		}
	}
	grpc := containerPort(dep.Spec.Template.Spec.Containers[0], "otlp-grpc")

	data, err := os.ReadFile("../config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Exporters struct {
			Storyroute struct {
				Resolver struct {
					DNS struct {
						Hostname string `json:"hostname"`
						Port     string `json:"port"`
					} `json:"dns"`
				} `json:"resolver"`
			} `json:"storyroute"`
		} `json:"exporters"`
		Service struct {
			Pipelines map[string]struct {
				Exporters []string `json:"exporters"`
			} `json:"pipelines"`
		} `json:"service"`
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	if ex := cfg.Service.Pipelines["traces"].Exporters; !slices.Contains(ex, "storyroute") || slices.Contains(ex, "otlp_grpc") {
		t.Errorf("the agent's traces go to %v; want storyroute (routed by the join key), not otlp_grpc (one replica per agent connection)", ex)
	}
	dns := cfg.Exporters.Storyroute.Resolver.DNS
	if want := "${env:AGENTTRAIL_GATEWAY_DNS:-" + hl.Name + "." + hl.Namespace + ".svc}"; dns.Hostname != want {
		t.Errorf("storyroute resolves %q; want %q", dns.Hostname, want)
	}
	if want := fmt.Sprintf("${env:AGENTTRAIL_GATEWAY_PORT:-%d}", grpc); dns.Port != want {
		t.Errorf("storyroute port %q; want %q (the pods' otlp-grpc port)", dns.Port, want)
	}
}

// service returns the Service named name in ms.
func service(t *testing.T, ms []manifest, name string) *corev1.Service {
	t.Helper()
	for _, m := range ms {
		if s, ok := m.obj.(*corev1.Service); ok && s.Name == name {
			return s
		}
	}
	t.Fatalf("no Service %s", name)
	return nil
}

// TestStrictDecodingCatchesTypos proves decodeDocument fails on a misspelled
// field that the lenient universal deserializer silently drops.
func TestStrictDecodingCatchesTypos(t *testing.T) {
	bad := []byte(`apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: typo
spec:
  selector:
    matchLabels: {app: typo}
  template:
    metadata:
      labels: {app: typo}
    spec:
      hostPid: true
      containers:
        - name: c
          image: example
`)
	obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(bad, nil, nil)
	if err != nil {
		t.Fatalf("universal deserializer: %v", err)
	}
	if obj.(*appsv1.DaemonSet).Spec.Template.Spec.HostPID {
		t.Fatal("hostPid (sic) unexpectedly set hostPID")
	}
	_, _, err = strictSerializer().Decode(bad, nil, nil)
	if err == nil || !runtime.IsStrictDecodingError(err) || !strings.Contains(err.Error(), "hostPid") {
		t.Fatalf("strict decoding error = %v; want a strict decoding error naming hostPid", err)
	}
	if _, _, err := decodeDocument(bad); err == nil {
		t.Fatal("decodeDocument accepted a misspelled field")
	}

	dup := []byte("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: a\n  name: b\n")
	if _, _, err := decodeDocument(dup); err == nil {
		t.Fatal("decodeDocument accepted a duplicate field")
	}
}

func TestSplitDocuments(t *testing.T) {
	in := "# header\n---\na: 1\n--- # comment\n# only a comment\n---\nb: 2\n---\n"
	got := splitDocuments([]byte(in))
	if len(got) != 2 || !strings.Contains(string(got[0]), "a: 1") || !strings.Contains(string(got[1]), "b: 2") {
		t.Errorf("splitDocuments = %q", got)
	}
}

func capNames(cs []corev1.Capability) []string {
	var out []string
	for _, c := range cs {
		out = append(out, string(c))
	}
	sort.Strings(out)
	return out
}

func volumeByHostPath(vs []corev1.Volume, path string) *corev1.Volume {
	for i, v := range vs {
		if v.HostPath != nil && v.HostPath.Path == path {
			return &vs[i]
		}
	}
	return nil
}

func mountByName(ms []corev1.VolumeMount, name string) *corev1.VolumeMount {
	for i, m := range ms {
		if m.Name == name {
			return &ms[i]
		}
	}
	return nil
}

func containerPort(c corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

func checkQuantity(t *testing.T, what string, rl corev1.ResourceList, name corev1.ResourceName, want string) {
	t.Helper()
	got, ok := rl[name]
	if !ok {
		t.Errorf("%s is not set; want %s", what, want)
		return
	}
	if got.Cmp(resource.MustParse(want)) != 0 {
		t.Errorf("%s = %s; want %s", what, got.String(), want)
	}
}

// checkHealthProbes asserts readiness and liveness probes GET /status on port 13133
// (the healthcheckv2 extension).
func checkHealthProbes(t *testing.T, c corev1.Container) {
	t.Helper()
	for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("container %s: no %s httpGet probe", c.Name, name)
			continue
		}
		port := p.HTTPGet.Port.IntVal
		if p.HTTPGet.Port.StrVal != "" {
			port = containerPort(c, p.HTTPGet.Port.StrVal)
		}
		if port != 13133 || p.HTTPGet.Path != "/status" {
			t.Errorf("container %s: %s probe GET %s on port %s (%d); want /status on 13133", c.Name, name, p.HTTPGet.Path, p.HTTPGet.Port.String(), port)
		}
	}
}

var envRef = regexp.MustCompile(`\$\{env:([A-Za-z0-9_]+)(?::-([^}]*))?\}`)

// TestGatewayEnv: the gateway container's env names variables gateway.yaml reads (a misspelt
// one would change nothing), with gateway.yaml's defaults (the documented behaviour), and
// the findings go to exporters gateway.yaml defines, through its logs/findings pipeline: the
// agents' findings and the gateway's own findings connector's.
func TestGatewayEnv(t *testing.T) {
	dep := only[*appsv1.Deployment](t, loadManifests(t, "gateway.yaml"))
	c := dep.Spec.Template.Spec.Containers[0]
	raw, err := os.ReadFile(filepath.Join("..", "gateway.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defaults := map[string]string{}
	for _, m := range envRef.FindAllStringSubmatch(string(raw), -1) {
		if d, ok := defaults[m[1]]; ok && d != m[2] {
			t.Errorf("gateway.yaml: ${env:%s} has the defaults %q and %q", m[1], d, m[2])
		}
		defaults[m[1]] = m[2]
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
		d, ok := defaults[e.Name]
		if !ok {
			t.Errorf("env %s: gateway.yaml does not read it", e.Name)
			continue
		}
		if e.Value != d {
			t.Errorf("env %s = %q; gateway.yaml's default (the documented one) is %q", e.Name, e.Value, d)
		}
	}
	for _, name := range []string{"AGENTTRAIL_BACKEND_ENDPOINT", "AGENTTRAIL_FINDINGS_EXPORTERS", "AGENTTRAIL_FINDINGS_ENDPOINT"} {
		if _, ok := env[name]; !ok {
			t.Errorf("no env %s: where the gateway sends its data is set in the manifest", name)
		}
	}

	var cfg struct {
		Exporters  map[string]map[string]any `json:"exporters"`
		Connectors map[string]any            `json:"connectors"`
		Service    struct {
			Pipelines map[string]struct {
				Receivers []string `json:"receivers"`
				Exporters any      `json:"exporters"`
			} `json:"pipelines"`
		} `json:"service"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("gateway.yaml: %v", err)
	}
	var exporters []string
	if err := yaml.Unmarshal([]byte(env["AGENTTRAIL_FINDINGS_EXPORTERS"]), &exporters); err != nil || len(exporters) == 0 {
		t.Errorf("AGENTTRAIL_FINDINGS_EXPORTERS = %q is not a YAML list of exporters (%v)", env["AGENTTRAIL_FINDINGS_EXPORTERS"], err)
	}
	for _, e := range exporters {
		if _, ok := cfg.Exporters[e]; !ok {
			t.Errorf("AGENTTRAIL_FINDINGS_EXPORTERS names %s, which gateway.yaml does not define", e)
		}
	}
	// The agents' findings (otlp) and the gateway's own (findings) each reach a logs pipeline
	// to the exporters AGENTTRAIL_FINDINGS_EXPORTERS names.
	for _, recv := range []string{"otlp", "findings"} {
		found := false
		for name, p := range cfg.Service.Pipelines {
			if !strings.HasPrefix(name, "logs") || !slices.Contains(p.Receivers, recv) {
				continue
			}
			found = true
			if s, _ := p.Exporters.(string); !strings.HasPrefix(s, "${env:AGENTTRAIL_FINDINGS_EXPORTERS") {
				t.Errorf("%s exporters %v; want ${env:AGENTTRAIL_FINDINGS_EXPORTERS...}", name, p.Exporters)
			}
		}
		if !found {
			t.Errorf("gateway.yaml has no logs pipeline receiving %s: its findings would be refused (Unimplemented) or left on the spans", recv)
		}
	}
	if _, ok := cfg.Connectors["findings"]; !ok || !slices.Contains(exportersOf(cfg.Service.Pipelines["traces"].Exporters), "findings") {
		t.Error("the gateway's traces pipeline does not export to the findings connector: its own findings would stay on the spans")
	}
	// otlp_grpc/findings keeps its own queue on disk and retries until the backend is back.
	q, _ := cfg.Exporters["otlp_grpc/findings"]["sending_queue"].(map[string]any)
	if q["storage"] != "file_storage" {
		t.Errorf("otlp_grpc/findings sending_queue %v; want storage: file_storage", q)
	}
}

func exportersOf(v any) []string {
	var out []string
	if l, ok := v.([]any); ok {
		for _, e := range l {
			s, _ := e.(string)
			out = append(out, s)
		}
	}
	return out
}
