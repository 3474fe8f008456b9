package kubeapi

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"sigs.k8s.io/yaml"
)

// cluster is an etcd and a kube-apiserver on loopback, for one test.
type cluster struct {
	dir    string
	server string // https://127.0.0.1:port
	caPEM  []byte
	admin  *kubernetes.Clientset
}

// binaries returns the kube-apiserver (built by `make kube-apiserver` from tools/go.mod, or
// $KUBE_APISERVER) and Debian's etcd, or skips saying what is missing.
func binaries(t *testing.T) (apiserver, etcd string) {
	t.Helper()
	apiserver = os.Getenv("KUBE_APISERVER")
	if apiserver == "" {
		apiserver = filepath.Join("..", "..", "bin", "kube-apiserver")
	}
	if _, err := os.Stat(apiserver); err != nil {
		t.Skipf("no kube-apiserver at %s (make kube-apiserver builds it from tests/kubeapi/tools): %v", apiserver, err)
	}
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("no etcd on PATH (Debian's etcd-server, installed by scripts/prereqs.sh test-packages)")
	}
	abs, err := filepath.Abs(apiserver)
	if err != nil {
		t.Fatal(err)
	}
	return abs, etcd
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startProcess runs a server until the test ends, its output in dir/name.log (printed when the
// test fails). The channel is closed when it exits.
func startProcess(t *testing.T, dir, name, bin string, args ...string) <-chan struct{} {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("%s output (tail):\n%s", name, b)
		}
	})
	return exited
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// certs writes a self-signed CA, the API server's serving certificate for 127.0.0.1 and the
// service-account signing key, and returns the CA in PEM.
func certs(t *testing.T, dir string) []byte {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, srvKey, saKey := newKey(), newKey(), newKey()
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "agenttrail-test-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srv := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, "ca.crt"), "CERTIFICATE", caDER)
	writePEM(t, filepath.Join(dir, "server.crt"), "CERTIFICATE", srvDER)
	for name, k := range map[string]*ecdsa.PrivateKey{"server.key": srvKey, "sa.key": saKey} {
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, filepath.Join(dir, name), "EC PRIVATE KEY", der)
	}
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, "sa.pub"), "PUBLIC KEY", pub)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
}

// startCluster starts etcd and kube-apiserver (RBAC authorization, a static admin token, service
// account tokens signed by the test's key) and waits until the API server is ready.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	apiserverBin, etcdBin := binaries(t)
	dir := t.TempDir()
	c := &cluster{dir: dir, caPEM: certs(t, dir)}

	etcdPort, peerPort, apiPort := freePort(t), freePort(t), freePort(t)
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	startProcess(t, dir, "etcd", etcdBin,
		"--name=default", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=default="+peerURL, "--logger=zap", "--log-level=warn")

	const adminToken = "agenttrail-test-admin"
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(adminToken+`,admin,admin-uid,"system:masters"`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.server = "https://127.0.0.1:" + strconv.Itoa(apiPort)
	apiExited := startProcess(t, dir, "kube-apiserver", apiserverBin,
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+strconv.Itoa(apiPort),
		"--tls-cert-file="+filepath.Join(dir, "server.crt"), "--tls-private-key-file="+filepath.Join(dir, "server.key"),
		"--cert-dir="+filepath.Join(dir, "certs"),
		"--token-auth-file="+tokens,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(dir, "sa.key"),
		"--service-cluster-ip-range=10.96.0.0/24",
		// The endpoint reconciler refuses a loopback address for the kubernetes service's
		// endpoints; nothing here needs them.
		"--endpoint-reconciler-type=none",
		// No controller manager runs: nothing creates the namespaces' default service
		// accounts the ServiceAccount admission plugin would look up for every pod.
		"--disable-admission-plugins=ServiceAccount",
		// Fewer goroutines and requests on the shared 2-core machine.
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--v=1")

	admin, err := kubernetes.NewForConfig(c.restConfig(adminToken))
	if err != nil {
		t.Fatal(err)
	}
	c.admin = admin
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		body, err := admin.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		cancel()
		if err == nil && bytes.Equal(body, []byte("ok")) {
			break
		}
		select {
		case <-apiExited:
			t.Fatal("kube-apiserver exited before it was ready")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-apiserver not ready after 90s: %v %s", err, body)
		}
		time.Sleep(500 * time.Millisecond)
	}
	return c
}

func (c *cluster) restConfig(token string) *rest.Config {
	return &rest.Config{Host: c.server, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAData: c.caPEM}}
}

// kubeconfig writes a kubeconfig file that authenticates with token, as a collector outside the
// cluster (auth_type kubeConfig) would use it.
func (c *cluster) kubeconfig(t *testing.T, token string) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: c.server, CertificateAuthorityData: c.caPEM}
	cfg.AuthInfos["agenttrail"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "agenttrail"}
	cfg.CurrentContext = "test"
	path := filepath.Join(c.dir, "kubeconfig-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// applyRBAC creates the Namespace, ServiceAccount, ClusterRole and ClusterRoleBinding of the
// shipped DaemonSet manifest, and returns its ClusterRole.
func (c *cluster) applyRBAC(t *testing.T, ctx context.Context, manifest string) *rbacv1.ClusterRole {
	t.Helper()
	raw, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	var role *rbacv1.ClusterRole
	for _, doc := range bytes.Split(raw, []byte("\n---")) {
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			t.Fatalf("%s: %v", manifest, err)
		}
		if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(js, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", manifest, err)
		}
		switch o := obj.(type) {
		case *corev1.Namespace:
			_, err = c.admin.CoreV1().Namespaces().Create(ctx, o, metav1.CreateOptions{})
		case *corev1.ServiceAccount:
			_, err = c.admin.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRole:
			role = o
			_, err = c.admin.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRoleBinding:
			_, err = c.admin.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.Role, *rbacv1.RoleBinding:
			t.Fatalf("%s: a %T is not applied by this test: add it", manifest, o)
		default:
			continue // the workloads themselves: nothing runs them here
		}
		if err != nil {
			t.Fatalf("apply %s: %v", objName(obj), err)
		}
	}
	if role == nil {
		t.Fatalf("%s has no ClusterRole", manifest)
	}
	return role
}

func objName(obj runtime.Object) string {
	m, err := meta.Accessor(obj)
	if err != nil {
		return fmt.Sprintf("%T", obj)
	}
	return fmt.Sprintf("%T %s/%s", obj, m.GetNamespace(), m.GetName())
}

// serviceAccountToken asks the TokenRequest API for a token of the service account, as the
// kubelet does for the DaemonSet's pods.
func (c *cluster) serviceAccountToken(t *testing.T, ctx context.Context, ns, name string) string {
	t.Helper()
	expiry := int64(3600)
	tr, err := c.admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token of %s/%s: %v", ns, name, err)
	}
	return tr.Status.Token
}
